"""Kubernetes operator for ZotCluster resources."""
