"""Installing the cibuildwheel a build runs (an upstream pin or a patched series), cached and
locked per machine.

May import: core."""
