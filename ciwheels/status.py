"""Publish status per cell, for the HTML grid: is a wheel of the cell's package version on the
cell's registry? Read from the registries' simple indexes."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from packaging.version import Version

from ciwheels.model import Cell, Registry, wheel_matches


def project_name_version(project: Path) -> tuple[str, str | None]:
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "", None
    return data.get("name", ""), data.get("version")


def publish_status(cells: list[Cell], registries: dict[str, Registry], project: Path) -> dict[str, str]:
    """{cell id: "published" | "missing" | "unknown"} for cells that name a registry. Indexes
    are read with CIWHEELS_USERNAME/CIWHEELS_PASSWORD when set; "unknown" when one cannot be."""
    from packaging.utils import canonicalize_name

    from ciwheels.variants import InvalidWheelName, parse_wheel_name

    from ciwheels.errors import CiwheelsError
    from ciwheels.registry import RegistryClient, Target

    own_name, own_version = project_name_version(project)
    listings: dict[tuple[str, str], dict[str, str | None] | None] = {}
    status = {}
    for cell in cells:
        if not cell.registry or cell.registry not in registries:
            continue
        name = canonicalize_name(cell.package or own_name)
        key = (cell.registry, name)
        if key not in listings:
            reg = registries[cell.registry]
            target = Target(reg.url.rstrip("/"), os.environ.get("CIWHEELS_USERNAME", ""),
                            os.environ.get("CIWHEELS_PASSWORD", ""), "status", reg.index)
            try:
                listings[key] = RegistryClient(target, retries=2, timeout=20).index(name) if name else None
            except CiwheelsError:
                listings[key] = None
        files = listings[key]
        if files is None:
            status[cell.id] = "unknown"
            continue
        names = []
        for f in files:
            try:
                names.append(parse_wheel_name(f))  # plain wheels and wheel variants
            except InvalidWheelName:
                continue  # sdists, -variants.json
        version = cell.version or own_version
        if version is None:  # dynamic version: the newest on the index
            versions = sorted({Version(n.version) for n in names})
            version = str(versions[-1]) if versions else None
        # a variant cell's wheel carries its label; every other cell's wheel carries none
        wanted = [n.filename for n in names if version is not None and Version(n.version) == Version(version)
                  and n.label == (cell.variant or None)]
        status[cell.id] = "published" if any(wheel_matches(f, cell) for f in wanted) else "missing"
    return status
