"""Text and HTML for people: the matrix table, explain, the grid, diff, pip-config and doctor.

May import: everything below it (core .. project)."""
