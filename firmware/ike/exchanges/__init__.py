"""One module per exchange, in the order they run (RFC 7296 §1)."""
