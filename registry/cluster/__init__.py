"""zot-compatible scale-out clustering: who owns a repository, who am I, where a request is answered, and
the proxy to the owner."""
