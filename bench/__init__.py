"""Loopback benchmark of this registry against distribution (docker-registry), with the same clients.

`make bench` (or `python -m bench.run`) writes docs/benchmarks.md and docs/benchmarks.png.
"""
