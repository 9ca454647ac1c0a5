"""The image catalog files, each read once: `images.toml` (the recipe's Debian suite, image tag,
and per arch its Debian name and GNU triplet) and `bases.toml` (the glibc of the bases the
pipelines may build images on). Every reader of these files goes through here."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from ciwheels.core.resources import data_dir


@functools.cache
def _read(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def image_catalog(directory: Path | None = None) -> dict:
    """images.toml of the catalog in `directory` (default: the built-in catalog). Shared: do not
    modify the result."""
    return _read((directory or data_dir("catalog")) / "images.toml")


def image_arches(directory: Path | None = None) -> list[str]:
    """The arches `ciwheels image build` has a recipe for."""
    return list(image_catalog(directory)["arches"])


def base_glibc(directory: Path | None = None) -> dict[str, str]:
    """bases.toml: {base image reference: its glibc version}."""
    return _read((directory or data_dir("catalog")) / "bases.toml")["glibc"]
