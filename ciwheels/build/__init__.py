"""Running cibuildwheel for cells in containers: select cells, prepare invocations, run,
place wheels and reports.

May import: core, catalog, net, isa, matrix, cibw, images, pipelines, dist."""
