"""Wheel variants (PEP 825, draft): ISA levels published as variant wheels beside the plain
baseline wheel in one registry.

    numpy-2.3.2-cp313-cp313-manylinux_2_28_x86_64.whl             the baseline, a plain wheel
    numpy-2.3.2-cp313-cp313-manylinux_2_28_x86_64-x86_64_v3.whl   a variant: label x86_64_v3,
                                                                  *.dist-info/variant.json inside
    numpy-2.3.2-variants.json                                     on the index: every label of
                                                                  the release (uploaded last)

What installers accept (checked with uv 0.13.8, see shared/notes/variants.md): only the schema
URLs of SCHEMAS; a `providers` entry for every namespace of `default-priorities.namespace`;
without the index-level `-variants.json` uv installs the plain wheel. pip ignores variant
wheels. `packaging` cannot parse variant file names, so `parse_wheel_name` does it: at most one
label, `^[0-9a-z_.]+$`, after the platform tag; a build tag (which starts with a digit) comes
after the version."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

from ciwheels.catalog import Catalog, IsaLevel, variant_arches
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.wheel import INDEX_SUFFIX, LABEL, InvalidWheelName, WheelName, index_file_name, parse_wheel_name

# The schema uv 0.13.x accepts (it also knows .../peps/825/v0.1.1.json); variantlib 0.2.2
# writes https://variants-schema.wheelnext.dev/v0.2.0.json, which uv rejects.
SCHEMA = "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json"
SCHEMAS = (SCHEMA, "https://variants-schema.wheelnext.dev/peps/825/v0.1.1.json")
VARIANT_JSON = "variant.json"


# -- the catalog's variant data -------------------------------------------------------------------
def property_of(level: IsaLevel) -> tuple[str, str, str]:
    """'x86_64 :: level :: v3' -> ('x86_64', 'level', 'v3')."""
    parts = tuple(p.strip() for p in level.variant.split("::"))
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"catalog isa.toml {level.name}: variant {level.variant!r} is not 'namespace :: feature :: value'")
    return parts  # type: ignore[return-value]


def variant_json(level: IsaLevel, catalog: Catalog) -> dict:
    """The `*.dist-info/variant.json` of a wheel of `level`."""
    namespace, feature, value = property_of(level)
    provider = catalog.arches[level.arch].variant_provider
    if not provider or not level.variant_label:
        raise CiwheelsError(f"{level.name} has no wheel variant: no installer has a provider for {level.arch}")
    return {"$schema": SCHEMA,
            "default-priorities": {"namespace": [namespace]},
            "providers": {namespace: {"requires": [provider]}},
            "variants": {level.variant_label: {namespace: {feature: [value]}}}}


def check_variant_json(data: dict, where: str) -> None:
    """What uv 0.13 requires of a variant.json or -variants.json, as a CiwheelsError."""
    if data.get("$schema") not in SCHEMAS:
        raise CiwheelsError(f"{where}: $schema {data.get('$schema')!r} is not one installers accept",
                            allowed=list(SCHEMAS))
    namespaces = data.get("default-priorities", {}).get("namespace", [])
    missing = [ns for ns in namespaces if ns not in data.get("providers", {})]
    if missing:
        raise CiwheelsError(f"{where}: no providers entry for namespace(s) {', '.join(missing)}")
    for label in data.get("variants", {}):
        if not LABEL.fullmatch(label):
            raise CiwheelsError(f"{where}: variant label {label!r} must match ^[0-9a-z_.]+$")


# -- making a variant wheel -----------------------------------------------------------------------
def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _dist_info(names: list[str], wheel: str) -> str:
    infos = sorted({n.split("/", 1)[0] for n in names if n.count("/") == 1 and n.split("/", 1)[0].endswith(".dist-info")
                    and n.endswith("/WHEEL")})
    if len(infos) != 1:
        raise CiwheelsError(f"{wheel}: expected one *.dist-info folder with a WHEEL file, found {infos or 'none'}")
    return infos[0]


def make_variant(wheel: Path, level: IsaLevel, catalog: Catalog, out: Path | None = None) -> Path:
    """Turn a plain (repaired, verified) wheel into the variant wheel of `level`: the label added
    to the file name, `*.dist-info/variant.json` added and RECORD rewritten to list it (with its
    hash). Every other member is copied byte for byte, in order. Returns the new wheel's path
    (in `out`, default the wheel's folder); the plain wheel is left in place."""
    name = parse_wheel_name(wheel.name)
    if name.label is not None:
        raise CiwheelsError(f"{wheel.name} is a variant wheel already (label {name.label})")
    data = json.dumps(variant_json(level, catalog), indent=2, sort_keys=True).encode() + b"\n"
    target = (out or wheel.parent) / f"{wheel.name[:-4]}-{level.variant_label}.whl"
    with zipfile.ZipFile(wheel) as src:
        infos = src.infolist()
        info_dir = _dist_info([i.filename for i in infos], wheel.name)
        record_name, variant_name = f"{info_dir}/RECORD", f"{info_dir}/{VARIANT_JSON}"
        if any(i.filename == variant_name for i in infos):
            raise CiwheelsError(f"{wheel.name} already holds {variant_name}")
        try:
            rows = [row for row in csv.reader(io.StringIO(src.read(record_name).decode("utf-8"))) if row]
        except KeyError:
            raise CiwheelsError(f"{wheel.name}: no {record_name}; not a wheel") from None
        rows = [r for r in rows if r[0] != record_name]
        rows += [[variant_name, _record_hash(data), str(len(data))], [record_name, "", ""]]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in infos:
                if info.filename == record_name:
                    continue
                dst.writestr(info, src.read(info), compress_type=info.compress_type)
            stamp = next(i.date_time for i in infos if i.filename == record_name)
            dst.writestr(zipfile.ZipInfo(variant_name, stamp), data, compress_type=zipfile.ZIP_DEFLATED)
            dst.writestr(zipfile.ZipInfo(record_name, stamp), buf.getvalue().encode(),
                         compress_type=zipfile.ZIP_DEFLATED)
        tmp.replace(target)
    return target


def read_variant_json(wheel: Path) -> dict | None:
    """The variant.json inside a wheel; None for a plain wheel."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info_dir = _dist_info(names, wheel.name)
        member = f"{info_dir}/{VARIANT_JSON}"
        if member not in names:
            return None
        try:
            return json.loads(z.read(member))
        except ValueError as e:
            raise CiwheelsError(f"{wheel.name}: {member} is not JSON ({e})") from None


# -- the index-level file -------------------------------------------------------------------------
def merge(documents: list[tuple[str, dict]]) -> dict:
    """One `-variants.json` from variant.json documents ((where, data)): the union of their
    labels. A label must mean the same properties everywhere; priorities and providers must agree."""
    out: dict = {"$schema": SCHEMA, "default-priorities": {"namespace": []}, "providers": {}, "variants": {}}
    seen: dict[str, str] = {}
    for where, data in documents:
        check_variant_json(data, where)
        for ns in data.get("default-priorities", {}).get("namespace", []):
            if ns not in out["default-priorities"]["namespace"]:
                out["default-priorities"]["namespace"].append(ns)
        for ns, provider in data.get("providers", {}).items():
            if out["providers"].setdefault(ns, provider) != provider:
                raise CiwheelsError(f"{where}: provider of namespace {ns} differs from {seen.get(ns, 'another wheel')}'s")
            seen.setdefault(ns, where)
        for label, props in data.get("variants", {}).items():
            if out["variants"].setdefault(label, props) != props:
                raise CiwheelsError(f"{where}: variant {label} has other properties than in {seen.get(label)}: "
                                    f"one label must mean one thing in a release")
            seen.setdefault(label, where)
    out["default-priorities"]["namespace"].sort()
    return out


def dumps(data: dict) -> bytes:
    """Byte-stable JSON: the same labels give the same bytes (and sha256) on every run."""
    return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def index_files(wheels: list[Path]) -> dict[str, bytes]:
    """{`{name}-{version}-variants.json`: its bytes} for the releases among `wheels` that have
    variant wheels (plain ones are ignored)."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for wheel in sorted(wheels, key=lambda p: p.name):
        name = parse_wheel_name(wheel.name)
        if name.label is None:
            continue
        data = read_variant_json(wheel)
        if data is None:
            raise CiwheelsError(f"{wheel.name} has a variant label but no variant.json inside")
        if name.label not in data.get("variants", {}):
            raise CiwheelsError(f"{wheel.name}: its variant.json does not define its label {name.label}")
        groups.setdefault(index_file_name(name), []).append((wheel.name, data))
    return {fname: dumps(merge(docs)) for fname, docs in sorted(groups.items())}


def level_of(data: dict, label: str | None, arch: str, catalog: Catalog) -> IsaLevel | None:
    """The ISA level a variant.json (of a wheel labelled `label`, or its only variant) stands for."""
    variants = data.get("variants", {})
    if label is None and len(variants) == 1:
        label = next(iter(variants))
    props = variants.get(label or "", {})
    have = {f"{ns} :: {feature} :: {value}" for ns, features in props.items()
            for feature, values in features.items() for value in values}
    return next((lv for lv in catalog.arches[arch].levels if lv.variant and lv.variant in have), None) \
        if arch in catalog.arches else None


def installed_variant(binary: Path) -> tuple[dict, str] | None:
    """(variant.json, dist-info path) of the installed distribution whose RECORD lists `binary`
    (a file in site-packages), or None."""
    binary = binary.resolve()
    for parent in binary.parents:
        for info in parent.glob("*.dist-info"):
            record, variant = info / "RECORD", info / VARIANT_JSON
            if not record.is_file():
                continue
            rel = binary.relative_to(parent).as_posix()
            with open(record, encoding="utf-8", newline="") as f:
                if any(row and row[0] == rel for row in csv.reader(f)):
                    if not variant.is_file():
                        return None
                    return json.loads(variant.read_text(encoding="utf-8")), str(info)
        if any(parent.glob("*.dist-info")):
            return None  # site-packages reached: no distribution lists it
    return None


# -- publishing the index-level file --------------------------------------------------------------
def wanted_index_files(wheels: list[Path], hosted: dict[str, dict[str, str | None]], catalog: Catalog
                       ) -> dict[str, tuple[str, bytes]]:
    """{`-variants.json` name: (project, bytes)} for the variant wheels among `wheels`, covering
    also the labels of variant wheels of the same release the registry already hosts (`hosted`:
    project -> {file: sha256}), so that publishing one more level later keeps the earlier ones."""
    from packaging.utils import canonicalize_name

    by_label = {lv.variant_label: lv for lv in catalog.levels.values() if lv.variant_label}
    docs: dict[str, list[tuple[str, dict]]] = {}
    projects: dict[str, str] = {}
    for fname, data in index_files(wheels).items():
        project = canonicalize_name(fname.split("-", 1)[0])
        projects[fname] = project
        docs[fname] = [("ciwheels", json.loads(data))]
        labels = set(json.loads(data)["variants"])
        for there in hosted.get(project, {}):
            try:
                name = parse_wheel_name(there)
            except InvalidWheelName:
                continue
            if name.label and name.label not in labels and index_file_name(name) == fname:
                level = by_label.get(name.label)
                if level is None:
                    raise CiwheelsError(f"the registry hosts {there}, whose label {name.label} ciwheels does not "
                                        f"know; cannot write {fname} for it")
                docs[fname].append((there, variant_json(level, catalog)))
                labels.add(name.label)
    return {fname: (projects[fname], dumps(merge(d))) for fname, d in docs.items()}
