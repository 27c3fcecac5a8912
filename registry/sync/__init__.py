"""zot's sync extension: pull-through cache and mirroring from upstream registries."""
