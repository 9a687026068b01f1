"""The unified transaction: provider records normalized, listed and searched."""
