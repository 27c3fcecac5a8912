"""Registry members on one machine: their addresses and ports (`addresses`), their processes
(`processes`), their configs (`configs`) and `zot-registry local-cluster` (`cluster`)."""
