"""zot-compatible OCI registry with scale-out clustering."""
