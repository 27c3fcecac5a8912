"""Local mode: a ZotCluster run as local processes on 127.0.0.1, 127.0.0.2, ... with the operator's
own rendering (config, hash key, TLS). `manifest` reads the file, `state` writes the state folder,
`supervisor` runs `local up`, `scale` is `local scale`, `report` formats what they print."""
