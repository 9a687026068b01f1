"""Merchants: creation, freeze status, funding and balances."""
