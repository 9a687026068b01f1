"""Platform: settings, database, tables, errors, names, money, crypto, Temporal client and codec,
auth, idempotency, pagination: what every domain uses, knowing no domain."""
