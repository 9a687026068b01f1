"""The double-entry ledger: postings, merchant holds, the invariant check."""
