"""The training engine: one function runs one cell."""
