"""Ion management."""
