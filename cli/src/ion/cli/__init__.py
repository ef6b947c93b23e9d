"""Ion cli."""
