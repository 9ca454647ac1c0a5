"""The `ciwheels` command line: one module per command group, each command parsing its options,
opening the project once, making one library call and showing the result. Library imports stay
inside the commands so that `ciwheels --help` starts fast.

May import: everything."""

from ciwheels.cli import build, builder, consumers, dist, image, init, matrix, pipelines  # noqa: F401  (they register)
from ciwheels.cli.app import cli, main

__all__ = ["cli", "main"]
