"""zot-compatible scale-out clustering: who owns a repository, who am I, and the proxy to the owner."""
