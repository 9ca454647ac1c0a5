"""Where the catalog and the templates are: inside the installed package, or at the top of
a source checkout (editable installs and running from the repository)."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # ciwheels/


def data_dir(name: str) -> Path:
    """`catalog`, `templates` or `images`."""
    packaged = _PACKAGE / "_data" / name
    if packaged.is_dir():
        return packaged
    source = {"catalog": _PACKAGE.parent / "matrix" / "catalog", "templates": _PACKAGE.parent / "templates",
              "images": _PACKAGE.parent / "images"}[name]
    if source.is_dir():
        return source
    raise FileNotFoundError(f"ciwheels is installed without its {name} data ({packaged} is missing)")


def cache_dir() -> Path:
    """Where downloads and installed tools are cached: CIWHEELS_CACHE, else ~/.cache/ciwheels."""
    return Path(os.environ.get("CIWHEELS_CACHE") or Path.home() / ".cache" / "ciwheels")
