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
import zipfile
from pathlib import Path

from ciwheels.catalog import Catalog, IsaLevel
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import open_regular, read_regular
from ciwheels.core.wheel import LABEL, InvalidWheelName, index_file_name, parse_wheel_name

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


MAX_VARIANT_JSON = 1 << 20  # bytes of a variant.json or -variants.json (ours are a few hundred)


def parse_variant_json(data: object, where: str) -> dict:
    """The one reader of a variant.json or -variants.json document (from a wheel of an
    artifact, an installed distribution, a registry): its shape checked, every part of the
    wrong type a CiwheelsError naming `where`, so that nothing downstream meets a list where an
    object belongs. Returns a clean copy: {$schema, default-priorities: {namespace: [str]},
    providers: {ns: {...}}, variants: {label: {ns: {feature: [str]}}}}."""
    def bad(what: str, value: object, want: str) -> CiwheelsError:
        return CiwheelsError(f"{where}: {what} must be {want}, not {type(value).__name__}")

    if not isinstance(data, dict):
        raise bad("a variant.json", data, "a JSON object")
    schema = data.get("$schema")
    priorities = data.get("default-priorities", {})
    if not isinstance(priorities, dict):
        raise bad("default-priorities", priorities, "an object")
    namespaces = priorities.get("namespace", [])
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise bad("default-priorities.namespace", namespaces, "a list of strings")
    providers = data.get("providers", {})
    if not isinstance(providers, dict) or not all(isinstance(v, dict) for v in providers.values()):
        raise bad("providers", providers, "an object of objects")
    variants = data.get("variants", {})
    if not isinstance(variants, dict):
        raise bad("variants", variants, "an object")
    clean_variants: dict = {}
    for label, props in variants.items():
        if not isinstance(props, dict):
            raise bad(f"variants.{label[:40]}", props, "an object")
        for ns, features in props.items():
            if not isinstance(features, dict):
                raise bad(f"variants.{label[:40]}.{ns[:40]}", features, "an object")
            for feature, values in features.items():
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise bad(f"variants.{label[:40]}.{ns[:40]}.{feature[:40]}", values, "a list of strings")
        clean_variants[label] = props
    out = {"$schema": schema, "default-priorities": {"namespace": list(namespaces)}, "providers": dict(providers),
           "variants": clean_variants}
    check_variant_json(out, where)
    return out


def loads_variant_json(raw: bytes, where: str) -> dict:
    """parse_variant_json of bytes: at most MAX_VARIANT_JSON of them, UTF-8 JSON."""
    if len(raw) > MAX_VARIANT_JSON:
        raise CiwheelsError(f"{where}: larger than {MAX_VARIANT_JSON >> 10} KiB, the limit for a variant.json")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise CiwheelsError(f"{where} is not JSON ({str(e)[:200]})") from None
    return parse_variant_json(data, where)


def check_variant_json(data: dict, where: str) -> None:
    """What uv 0.13 requires of a variant.json or -variants.json (already of the right shape:
    parse_variant_json), as a CiwheelsError."""
    if data.get("$schema") not in SCHEMAS:
        raise CiwheelsError(f"{where}: $schema {str(data.get('$schema'))[:100]!r} is not one installers accept",
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


def variant_json_in(z: zipfile.ZipFile, wheel_name: str) -> dict | None:
    """The variant.json inside an open wheel (read bounded: its header's size is not trusted);
    None for a plain wheel."""
    names = z.namelist()
    info_dir = _dist_info(names, wheel_name)
    member = f"{info_dir}/{VARIANT_JSON}"
    if member not in names:
        return None
    where = f"{wheel_name}: {member}"
    if z.getinfo(member).file_size > MAX_VARIANT_JSON:
        raise CiwheelsError(f"{where}: larger than {MAX_VARIANT_JSON >> 10} KiB, the limit for a variant.json")
    try:
        with z.open(member) as f:
            raw = f.read(MAX_VARIANT_JSON + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError, NotImplementedError) as e:
        raise CiwheelsError(f"{where}: cannot read it from the wheel ({e})") from None
    return loads_variant_json(raw, where)


def read_variant_json(wheel: Path) -> dict | None:
    """The variant.json inside a wheel file (opened as an untrusted file: core.files.open_regular);
    None for a plain wheel."""
    import os

    fd = open_regular(wheel, "wheel", 4 << 30)
    with os.fdopen(fd, "rb") as f:
        try:
            z = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            raise CiwheelsError(f"{wheel}: not a wheel: not a readable zip archive ({e})") from None
        with z:
            return variant_json_in(z, wheel.name)


# -- the index-level file -------------------------------------------------------------------------
def merge(documents: list[tuple[str, dict]]) -> dict:
    """One `-variants.json` from variant.json documents ((where, data)): the union of their
    labels. A label must mean the same properties everywhere; priorities and providers must agree."""
    out: dict = {"$schema": SCHEMA, "default-priorities": {"namespace": []}, "providers": {}, "variants": {}}
    seen: dict[str, str] = {}
    for where, data in documents:
        data = parse_variant_json(data, where)
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
                    raw = read_regular(variant, "variant.json", MAX_VARIANT_JSON)
                    return loads_variant_json(raw, str(variant)), str(info)
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
        docs[fname] = [("ciwheels", json.loads(data))]  # made by index_files just now
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
