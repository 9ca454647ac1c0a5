"""Stage 3, expand: a normalised spec -> the set of cells, each resolved by resolve.py.

The cross product of the axes (an arch without an `isa` entry builds its baseline level),
minus `exclude` entries (partial match), minus cells the catalog says cannot exist (kept as
`Dropped` with the reason), plus `include` entries. Cell ids are unique across all files."""

from __future__ import annotations

from ciwheels.catalog import LIBC_PLATFORM, Catalog, load_catalog, variant_arches
from ciwheels.core.errors import CiwheelsError
from ciwheels.matrix.load import describe_path
from ciwheels.matrix.model import Cell, Dropped, Expansion, Origin
from ciwheels.matrix.normalise import MatrixSpec, Package, ProjectSpec, Selector
from ciwheels.matrix.resolve import Resolver


def cell_id(package: str, version: str, py: str, libc: str, arch: str, level: str) -> str:
    base = f"{py}-{LIBC_PLATFORM[libc]}_{arch}-{level}"
    return f"{package}-{version}-{base}" if package else base


def expand(spec: ProjectSpec, catalog: Catalog) -> Expansion:
    total = Expansion([], [], [], [m.file for m in spec.matrices])
    seen: dict[str, str] = {}
    for matrix in spec.matrices:
        cells, dropped, warnings = _expand_one(matrix, spec, catalog)
        for cell in cells:
            if cell.id in seen:
                raise CiwheelsError(
                    f"cell {cell.id} is defined by both {seen[cell.id]} and {matrix.file}; "
                    "each cell may come from one matrix file only", file=matrix.file)
            seen[cell.id] = matrix.file
        total.cells.extend(cells)
        total.dropped.extend(dropped)
        total.warnings.extend(matrix.warnings + warnings)
    return total


def _expand_one(m: MatrixSpec, spec: ProjectSpec, cat: Catalog) -> tuple[list[Cell], list[Dropped], list[str]]:
    resolver = Resolver(m, spec, cat)
    doc = m.doc
    hits: dict[int, int] = {id(s): 0 for s in m.excludes}
    for pkg in m.packages:
        hits.update({id(s): 0 for s in pkg.excludes})
    versions: list[tuple[Package | None, str]] = [(p, v) for p in m.packages for v in p.versions]
    if m.packages and not versions:  # every `versions` selection resolved to no release
        return [], [], [f"{doc.file}: no package version to build: no release matches the versions selections"]
    versions = versions or [(None, "")]
    origins: dict[tuple, Origin] = {}

    selectors = {id(p): (*m.excludes, *p.excludes) for p in m.packages}
    selectors[id(None)] = tuple(m.excludes)

    def excluded_by(attrs: dict, pkg: Package | None) -> Selector | None:
        for sel in selectors[id(pkg)]:
            if sel.matches(attrs):
                hits[id(sel)] += 1
                return sel
        return None

    def sdist_drop(pkg: Package | None, version: str, attrs: dict) -> tuple[str, Origin] | None:
        """Builder mode: a build the package's own configuration leaves out (its build/skip and
        requires-python, as cibuildwheel would), unless the package opts out (sdist-config: false)."""
        own = m.sdist.get((pkg.name, version)) if pkg is not None else None
        for sel, reason, why in own.drops if own is not None else ():
            if sel.matches(attrs):
                return reason, why
        return None

    def origin(path: tuple) -> Origin:
        o = origins.get(path)
        if o is None:
            _, line, _ = doc.where(path)
            o = origins[path] = Origin("matrix", doc.file, line, describe_path(path))
        return o

    identifiers = {(py, libc, arch): f"{py}-{LIBC_PLATFORM[libc]}_{arch}" for py, _ in m.pythons
                   for libc in m.libcs for arch in m.arches}
    cells: dict[str, Cell] = {}
    dropped: list[Dropped] = []
    axis_count = 0
    for pkg, version in versions:
        name = pkg.name if pkg else ""
        for arch in m.arches:
            levels = m.isa.get(arch) or [(cat.arches[arch].baseline.name, None)]
            for libc in m.libcs:
                for py, py_origin in m.pythons:
                    for level, level_origin in levels:
                        axis_count += 1
                        attrs = {"python": py, "libc": libc, "arch": arch, "isa": level, "package": name,
                                 "version": version, "identifier": identifiers[(py, libc, arch)]}
                        cid = cell_id(name, version, py, libc, arch, level)
                        sel = excluded_by(attrs, pkg)
                        if sel is not None:
                            dropped.append(Dropped(cid, f"excluded by {describe_path(sel.path)}", origin(sel.path)))
                            continue
                        own = sdist_drop(pkg, version, attrs)
                        if own is not None:
                            dropped.append(Dropped(cid, *own))
                            continue
                        why = cat.pythons[py].available_on(libc, arch)
                        if why:
                            dropped.append(Dropped(cid, f"cannot be built: {why}",
                                                   resolver.catalog_origin("pythons.toml " + py)))
                            continue
                        cells[cid] = resolver.cell(cid, attrs, pkg, py_origin, level_origin, None)
    if axis_count and not cells and not m.includes:
        if m.excludes:
            where, reason = ("exclude",), "the exclude entries remove"
        elif any(p.excludes for p in m.packages):
            where, reason = ("packages",), "the packages' exclude entries remove"
        else:
            where, reason = (), "the catalog rules out"
        raise doc.error(where, f"{reason} every cell of this matrix; nothing would be built",
                        hint=f"all {axis_count} cells of the axes were dropped")
    # identifier globs are cibuildwheel's build/skip patterns (init carries them for every arch):
    # like cibuildwheel, they may name platforms this matrix does not build without a warning
    warnings = [_where(doc, sel.path) + f"{describe_path(sel.path)} matches no cell"
                for sel in (*m.excludes, *(s for p in m.packages for s in p.excludes))
                if hits[id(sel)] == 0 and not (sel.identifier or sel.not_identifier)]

    included: dict[str, tuple] = {}
    for inc in m.includes:
        for pkg, version in versions:
            name = pkg.name if pkg else ""
            cid = cell_id(name, version, inc.python, inc.libc, inc.arch, inc.isa)
            if cid in included:
                raise doc.error(inc.path, f"{describe_path(inc.path)} adds {cid}, which "
                                f"{describe_path(included[cid])} already adds; merge the two entries")
            included[cid] = inc.path
            attrs = {"python": inc.python, "libc": inc.libc, "arch": inc.arch, "isa": inc.isa, "package": name,
                     "version": version, "identifier": f"{inc.python}-{LIBC_PLATFORM[inc.libc]}_{inc.arch}"}
            existing = cells.get(cid)
            if existing is not None and inc.policy is not None and existing.policy != inc.policy:
                raise doc.error(inc.path, f"include entry adds {cid} with policy {inc.policy}, but the axes already "
                                f"build it with {existing.policy}; one cell id cannot have two policies")
            level_origin = origin(inc.path + ("isa",)) if inc.isa_given else None
            cells[cid] = resolver.cell(cid, attrs, pkg, inc.origin, level_origin, inc)
    resolver.check_image_pythons()
    if not cells:
        raise doc.error((), "this matrix has no cells")
    return list(cells.values()), dropped, warnings


def _where(doc, path: tuple) -> str:
    file, line, _ = doc.where(path)
    return f"{file}:{line}: " if line else f"{file}: "


def check_level_clashes(expansion: Expansion) -> None:
    """Two ISA levels of one Python and platform sent to one destination would be two different
    wheels with one file name (wheel tags cannot tell levels apart): the second upload fails, or
    one silently replaces the other in a folder. Refused before anything is built. Wheel variants
    keep levels apart in one registry: a variant's label is part of its file name."""
    seen: dict[tuple, Cell] = {}
    for cell in expansion.cells:
        key = (cell.package, cell.version, cell.python, cell.libc, cell.arch, cell.policy,
               cell.destination.key if cell.destination else "", cell.variant)
        other = seen.setdefault(key, cell)
        if other is cell or other.isa == cell.isa:
            continue
        where = cell.origins.get("isa")
        dest = cell.destination.source if cell.destination else "the default registry (none is named)"
        raise CiwheelsError(
            f"cells {other.id} and {cell.id} would publish two different wheels with one file name to {dest}: "
            f"wheel tags cannot tell ISA levels apart",
            file=where.file if where and where.kind == "matrix" else cell.matrix_file,
            line=where.line if where and where.kind == "matrix" else None,
            hint=f"Give each {cell.arch} level its own registry, e.g. registries: {{{cell.isa}: {{url: URL, "
                 f"select: {{isa: {cell.isa}}}}}, baseline: {{url: URL}}}}" +
                 (f", or publish its levels above the baseline as wheel variants beside the baseline: "
                  f"variants: [{cell.arch}]" if cell.arch in _variant_arches() else ""))


def _variant_arches() -> list[str]:

    return variant_arches(load_catalog())
