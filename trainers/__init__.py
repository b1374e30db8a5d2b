"""Model trainers (issue 3): plain PyTorch, runnable without Ray."""
