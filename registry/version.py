"""The project's version: the one place it is written. pyproject.toml reads it (setuptools dynamic
version), the operator's default image tag is built from it, and a unit test checks that the chart
and the generated CRD say the same."""

VERSION = "0.1.0"
