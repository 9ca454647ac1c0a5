"""After the build: build reports and manifests (artifacts), gather, wheel variants, verify
(the one ISA verdict of a wheel) and publish.

May import: core, catalog, net, isa, matrix."""
