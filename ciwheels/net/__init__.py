"""The one way ciwheels talks HTTP: the bounded client, per-host credentials, PEP 503/691
indexes, PyPI-compatible registries and GitLab's API.

May import: core, catalog."""
