"""Merchant webhooks: endpoints, events, signatures and the SSRF guard."""
