"""The local store: zot's image layout as files under a root directory, shared by the workers on one disk."""
