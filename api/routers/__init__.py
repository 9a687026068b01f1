"""One router module per resource; ROUTERS is what the app mounts under /api/v1."""

ROUTERS: list = []
