"""Ion dispatcher."""
