"""Alerts: rules, firings and their deduplication."""
