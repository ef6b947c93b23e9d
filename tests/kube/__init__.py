"""A real one-node Kubernetes cluster for tests (cluster.py) and its pytest fixtures."""
