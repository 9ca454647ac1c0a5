"""Human-readable views of cells: the `matrix` table and `explain`."""

from __future__ import annotations

import json

from ciwheels.catalog import Catalog
from ciwheels.matrix.cibwopts import cibw_options
from ciwheels.matrix.model import Cell, Dropped


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths))]
    lines.extend(fmt.format(*row).rstrip() for row in rows)
    return "\n".join(lines)


def cell_table(cells: list[Cell]) -> str:
    rows = []
    for c in cells:
        image = c.image if not c.custom_image else c.image + " (custom)"
        runs = ("emulated" if c.runner.emulated else "native") + f" on {c.runner.github}"
        rows.append([c.id, c.python, c.policy, c.arch, c.isa, image, runs])
    return table(["cell", "python", "policy", "arch", "isa", "image", "runs"], rows)


def explain_cell(cell: Cell, catalog: Catalog, as_json: bool = False) -> str:
    options = cibw_options(cell, catalog)
    rows = [
        ("python", cell.python), ("libc", cell.libc), ("arch", cell.arch), ("isa", cell.isa),
        ("policy", cell.policy), ("image", cell.image + (" (custom)" if cell.custom_image else "")),
        ("image_ref", cell.image_ref),
        ("cibuildwheel", cell.cibuildwheel + (f" + patches {', '.join(cell.patches)}" if cell.patches else "")),
        ("runner", f"{'emulated' if cell.runner.emulated else 'native'} on github:{cell.runner.github}"
                   + (f" gitlab tags:{','.join(cell.runner.gitlab)}" if cell.runner.gitlab else "")),
        ("timeout-minutes", str(cell.timeout_minutes)),
        ("native-compilers", "true" if cell.native_compilers else "false (CIWHEELS_NATIVE_COMPILERS=0: the image's "
                                                                   "own, emulated compilers)"),
        ("cross", "true (built natively with the image's native CPython and cross compilers, tested emulated; "
                  "falls back to the emulated build when it cannot)" if cell.cross else "false"),
    ]
    if cell.sysroot:  # a pipeline-built image: the old glibc its extensions compile against
        rows.append(("sysroot", cell.sysroot))
    if cell.registry:
        rows.append(("registry", cell.registry))
    elif cell.destination:  # the environment's registry (matrix/destination.py, step 4)
        rows.append(("registry", f"{cell.destination.url} (from {cell.destination.source})"))
    else:
        rows.append(("registry", "none: no registry selects it and none is set (CIWHEELS_REPOSITORY_URL)"))
    rows.append(("publish_as", publish_as_text(cell, catalog)))
    rows += [(f"environment.{k}", v) for k, v in cell.environment.items()]
    rows += [(f"cibuildwheel-options.{k}", json.dumps(v) if not isinstance(v, str) else v)
             for k, v in cell.cibuildwheel_options.items()]
    for key, value in (("test-command", cell.test_command), ("test-requires", " ".join(cell.test_requires)),
                       ("before-all", cell.before_all), ("before-build", cell.before_build),
                       ("build-requires", " ".join(cell.build_requires))):
        if value:
            rows.append((key, value))
    if as_json:
        return json.dumps({
            "cell": cell.to_json(),
            "settings": [{"setting": k, "value": v, "origin": str(cell.origins.get(k, "derived"))} for k, v in rows],
            "cibuildwheel_options": options,
        }, indent=1)
    out = [f"cell {cell.id}" + (f"  (package {cell.package} {cell.version})" if cell.package else "")]
    name_w = max(len(k) for k, _ in rows)
    val_w = min(60, max(len(v) for _, v in rows))
    for k, v in rows:
        out.append(f"  {k:<{name_w}}  {v:<{val_w}}  <- {cell.origins.get(k, 'derived')}")
    out.append("cibuildwheel options:")
    out.extend(f"  {k}={v}" for k, v in options.items())
    for note in cell.notes:
        out.append(f"note: {note}")
    return "\n".join(out)


def publish_as_text(cell: Cell, catalog: Catalog) -> str:
    """How the cell's level is told apart on an index, in words."""
    if cell.publish_as == "variant":
        return (f"variant {cell.variant} ({catalog.levels[cell.isa].variant}; a wheel variant beside the "
                f"baseline in one registry, installed by uv --preview-features wheel-variants)")
    if cell.publish_as == "registry":
        why = ("no installer has a variant provider for " + cell.arch
               if not catalog.arches[cell.arch].variant_provider else "the matrix does not ask for variants")
        return f"registry (a plain wheel in a registry of its level's own: {why})"
    return "plain (the baseline: a plain wheel)"


def explain_dropped(d: Dropped, as_json: bool = False) -> str:
    if as_json:
        return json.dumps({"id": d.id, "dropped": True, "reason": d.reason, "origin": str(d.origin)}, indent=1)
    return f"cell {d.id} is not built: {d.reason} [{d.origin}]"
