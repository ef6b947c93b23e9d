"""Ion proto."""
