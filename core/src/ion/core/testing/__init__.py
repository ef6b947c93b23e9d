"""Contract suites every backend of a port must pass, and test helpers; shipped for backend authors."""

from ion.core.testing._eventually import eventually

__all__ = ["eventually"]
