"""Stage 2, normalise: validated matrix documents -> a typed spec (placeholder; filled below)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ciwheels.catalog import Catalog
from ciwheels.load import MatrixDoc
from ciwheels.model import Origin, Registry


@dataclass
class ProjectSpec:
    registries: dict[str, Registry] = field(default_factory=dict)


def registries_of(docs: list[MatrixDoc]) -> dict[str, Registry]:
    """The registries the matrix files name, in file order; one name means one registry."""
    out: dict[str, Registry] = {}
    for doc in docs:
        for name, reg in doc.data.get("registries", {}).items():
            _, line, _ = doc.where(("registries", name))
            entry = Registry(name, reg["url"].rstrip("/"), reg.get("index", ""), "select" not in reg,
                             Origin("matrix", doc.file, line, f"registries.{name}"))
            if name in out and out[name] != entry:
                raise doc.error(("registries", name), f"registry {name!r} is defined twice, differently")
            out.setdefault(name, entry)
    return out


def normalise(docs: list[MatrixDoc], catalog: Catalog) -> ProjectSpec:
    return ProjectSpec(registries_of(docs))
