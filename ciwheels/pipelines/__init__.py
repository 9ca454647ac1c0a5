"""CI files: group cells into jobs (plan), render GitHub Actions and GitLab CI from the
templates, the build-image jobs.

May import: core, catalog, net, isa, matrix, images."""
