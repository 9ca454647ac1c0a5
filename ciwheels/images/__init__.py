"""The build image (`ciwheels image build`): its recipe and digest, upstream CPython sources,
labels, and the engine calls that build it.

May import: core, catalog, net."""
