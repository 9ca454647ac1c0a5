"""YAML -> cells: load and validate the matrix files, normalise them into a typed spec, the
settings cascade, expand, resolve each cell (and its registry), spell it as cibuildwheel
options. No network, no subprocess.

May import: core, catalog, net (names and URLs only), isa."""
