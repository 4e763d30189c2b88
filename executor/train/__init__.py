"""Training: one module per method family."""
