"""Model trainers: plain PyTorch, runnable without Ray (`python -m trainers.run spec.json`).
A trainer reads a selection snapshot and writes a model folder; no Ray, HTTP or DuckDB here."""

import os

# Weights come from installed packages only: never reach for a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
