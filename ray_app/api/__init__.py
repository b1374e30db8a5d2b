"""The HTTP API under /api: one router module per resource, auth in `deps`."""
