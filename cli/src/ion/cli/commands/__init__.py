"""The `ion` command groups, one module per noun."""
