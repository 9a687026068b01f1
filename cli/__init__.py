"""`payops`: the command line."""
