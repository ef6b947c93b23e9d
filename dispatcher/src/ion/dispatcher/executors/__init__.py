"""Executors: where a module's job runs. Only the local executor exists so far."""
