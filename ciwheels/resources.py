"""Where the catalog and the templates are: inside the installed package, or at the top of
a source checkout (editable installs and running from the repository)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`catalog`, `templates` or `images`."""
    packaged = _HERE / "_data" / name
    if packaged.is_dir():
        return packaged
    source = {"catalog": _HERE.parent / "matrix" / "catalog", "templates": _HERE.parent / "templates",
              "images": _HERE.parent / "images"}[name]
    if source.is_dir():
        return source
    raise FileNotFoundError(f"ciwheels is installed without its {name} data ({packaged} is missing)")
