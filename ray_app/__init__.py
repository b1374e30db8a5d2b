"""The labtrain service: Ray Serve + FastAPI HTTP API, the storage actor, the CLI."""

__version__ = "0.1.0"
