"""Ion handler."""
