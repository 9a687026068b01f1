"""Reconciliation: payops against provider data, bank statements and the bank's records."""
