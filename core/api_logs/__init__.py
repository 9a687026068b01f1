"""The API request log: who called which route, with what outcome and latency (never bodies)."""
