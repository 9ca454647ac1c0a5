"""`ciwheels matrix --grid`: the matrix as a picture, Pythons by platform with the ISA levels
built in each cell, for a terminal or as a self-contained HTML page."""

from __future__ import annotations

import html
from collections import defaultdict

from ciwheels.catalog import LIBC_PLATFORM, Catalog
from ciwheels.matrix.model import Cell


def _layout(cells: list[Cell], catalog: Catalog):
    arch_order = {a: i for i, a in enumerate(catalog.arches)}
    py_order = {p: i for i, p in enumerate(catalog.pythons)}
    platforms = sorted({(c.libc, c.arch) for c in cells}, key=lambda p: (p[0] != "glibc", arch_order[p[1]]))
    pythons = sorted({c.python for c in cells}, key=lambda p: py_order[p])
    grid: dict[tuple, list] = defaultdict(list)
    for c in cells:
        grid[(c.python, c.libc, c.arch)].append(catalog.levels[c.isa])
    for levels in grid.values():
        levels.sort(key=lambda lv: lv.rank)
    packages = sorted({(c.package, c.version) for c in cells if c.package})
    return platforms, pythons, grid, packages


def _heading(libc: str, arch: str) -> str:
    return f"{LIBC_PLATFORM[libc]} {arch}"


def text_grid(cells: list[Cell], catalog: Catalog) -> str:
    platforms, pythons, grid, packages = _layout(cells, catalog)
    variant = {(c.python, c.libc, c.arch, c.isa) for c in cells if c.publish_as == "variant"}

    def short(py: str, p: tuple, lv) -> str:
        return lv.short + ("*" if (py, *p, lv.name) in variant else "")

    headers = ["python"] + [_heading(*p) for p in platforms]
    rows = [[py] + [" ".join(short(py, p, lv) for lv in grid.get((py, *p), [])) or "-" for p in platforms]
            for py in pythons]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    legend = sorted({lv for levels in grid.values() for lv in levels}, key=lambda lv: (lv.arch, lv.rank))
    lines.append("")
    lines.append("ISA levels: " + ", ".join(f"{lv.short}={lv.name}" for lv in legend) + "; - = not built"
                 + ("; * = a wheel variant beside the baseline" if variant else ""))
    if packages:
        lines.append(f"each cell is built for {len(packages)} package versions: "
                     + ", ".join(f"{n} {v}" for n, v in packages[:8]) + (" ..." if len(packages) > 8 else ""))
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.35rem .6rem;text-align:center}
th{background:#f3f3f3}td.empty{color:#bbb}
.lv{display:inline-block;border-radius:.3rem;padding:0 .35rem;margin:0 .1rem;font-size:.85em;
background:#e6f0ff;border:1px solid #9bb8e8}.base{background:#eef7ee;border-color:#9cc79c}
caption{caption-side:bottom;padding-top:.6rem;font-size:.85em;color:#555}
.published{background:#d9f2d9;border-color:#3c963c}.missing{background:#fbe3e3;border-color:#c05050}
"""


def html_grid(cells: list[Cell], catalog: Catalog, title: str, status: dict[str, str] | None = None) -> str:
    """`status`: {cell id: published | missing | unknown} where a registry is configured."""
    platforms, pythons, grid, packages = _layout(cells, catalog)
    status = status or {}
    by_key = {(c.python, c.libc, c.arch, c.isa): c.id for c in cells}
    e = html.escape
    head = "".join(f"<th>{e(_heading(*p))}</th>" for p in platforms)
    body = []
    for py in pythons:
        tds = []
        for p in platforms:
            levels = grid.get((py, *p), [])
            if not levels:
                tds.append('<td class="empty">–</td>')
                continue
            badges = ""
            for lv in levels:
                st = status.get(by_key.get((py, *p, lv.name), ""), "")
                mark = {"published": " ✓", "missing": " ✗", "unknown": " ?"}.get(st, "")
                tip = lv.name + (f": {st}" if st else "")
                badges += (f'<span class="lv{" base" if lv.baseline else ""}{" " + st if st else ""}" '
                           f'title="{e(tip)}">{e(lv.short)}{mark}</span>')
            tds.append(f"<td>{badges}</td>")
        body.append(f"<tr><th>{e(py)}</th>{''.join(tds)}</tr>")
    legend = sorted({lv for levels in grid.values() for lv in levels}, key=lambda lv: (lv.arch, lv.rank))
    caption = "ISA levels: " + ", ".join(f"{e(lv.short)} = {e(lv.name)}" for lv in legend)
    if packages:
        caption += f". Each cell is built for {len(packages)} package versions."
    if status:
        counts = {s: sum(v == s for v in status.values()) for s in ("published", "missing", "unknown")}
        caption += (f". Publish status: ✓ published {counts['published']}, ✗ missing {counts['missing']}"
                    + (f", ? unknown {counts['unknown']}" if counts["unknown"] else ""))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"
            f"<p>{len(cells)} cells on {len(platforms)} platforms.</p>"
            f"<table><caption>{caption}</caption><thead><tr><th>python</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></body></html>\n")
