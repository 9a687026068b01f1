"""Ops actions: typed, approved, audited operations on payouts and merchants."""
