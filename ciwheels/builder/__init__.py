"""Builder mode: upstream releases, the state of every cell (registries, failures remembered),
the missing-cells plan and the status page.

May import: everything below it (core .. build)."""
