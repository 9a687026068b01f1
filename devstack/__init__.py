"""The dev stack: supervisor, embedded PostgreSQL/Redis/Temporal, demo data, webhook listener."""
