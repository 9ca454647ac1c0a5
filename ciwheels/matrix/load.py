"""Stage 1, load: read matrix YAML files, validate them against the schema, and keep where
every value came from (file, line, column) for errors and for `ciwheels explain`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ciwheels.catalog import Catalog, load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.matrix.cron import problem
from ciwheels.matrix.schema import matrix_schema

Path_ = tuple[str | int, ...]  # a location inside the document: ("exclude", 0, "arch")

# Bounds on a matrix file, checked before and while it is read: a hostile or broken file
# (a YAML alias bomb, thousands of nested brackets, a huge list) ends with an error naming
# the limit, in well under a second, instead of minutes and gigabytes.
MAX_MATRIX_BYTES = 256 * 1024  # size of one matrix file
MAX_DEPTH = 32  # nesting of mappings and lists (real matrices need about 6)
MAX_VALUES = 50_000  # values validated in one file, every use of a YAML alias counted again
MAX_ITEMS = 10_000  # entries of one list or mapping


@dataclass(frozen=True)
class MatrixDoc:
    """One validated matrix file: plain Python data plus positions of every value."""

    file: str  # as given/displayed (relative where possible)
    data: dict[str, Any]
    positions: dict[Path_, tuple[int, int]] = field(repr=False)  # value positions, 1-based
    key_positions: dict[Path_, tuple[int, int]] = field(repr=False)

    def where(self, path: Path_) -> tuple[str, int | None, int | None]:
        pos = self.positions.get(tuple(path))
        while pos is None and path:
            path = path[:-1]
            pos = self.positions.get(tuple(path))
        return (self.file, *(pos or (None, None)))

    def error(self, path: Path_, message: str, **kw) -> CiwheelsError:
        file, line, column = self.where(path)
        return CiwheelsError(message, file=file, line=line, column=column, **kw)


def describe_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the matrix"


def load_files(paths: list[Path], catalog: Catalog | None = None, *, root: Path | None = None) -> list[MatrixDoc]:
    """Load several matrix files, shown relative to `root` where they lie below it."""
    out = []
    for p in paths:
        shown = str(p)
        if root is not None:
            try:
                shown = str(Path(p).resolve().relative_to(root.resolve()))
            except ValueError:
                pass
        out.append(load_matrix(p, catalog, display=shown))
    return out


def load_matrix(path: str | Path, catalog: Catalog | None = None, *, display: str | None = None,
                text: str | None = None) -> MatrixDoc:
    """Read and validate one matrix file. `text` reads from a string (e.g. a git revision)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    catalog = catalog or load_catalog()
    display = display or str(path)
    if text is None:
        text = _read_text(Path(path), display)
    _prescan(text, display)
    yaml = YAML(typ="rt")
    try:
        node = yaml.load(text)
    except RecursionError:
        raise CiwheelsError(f"the matrix is nested too deeply (the limit is {MAX_DEPTH} levels)",
                            file=display) from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(str(x) for x in (e.context, e.problem) if x)
        if "found duplicate key" in str(e):
            quoted = re.search(r'"([^"]*)"', str(e.problem))
            problem = f"duplicate key {quoted.group(1)}" if quoted else "duplicate key"
        raise CiwheelsError(
            f"invalid YAML: {problem}",
            file=display,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except YAMLError as e:
        raise CiwheelsError(f"invalid YAML: {e}", file=display) from None
    doc = MatrixDoc(display, {}, {(): (1, 1)}, {})
    if node is None:
        raise CiwheelsError("the matrix file is empty; it needs at least 'python'", file=display, line=1)
    lc = getattr(node, "lc", None)
    if lc is not None and lc.line is not None and lc.col is not None:  # a tagged scalar (`!0`) has none
        doc.positions[()] = (lc.line + 1, lc.col + 1)
    data = _Validator(doc, catalog).walk(node, matrix_schema(catalog), ())
    object.__setattr__(doc, "data", data)
    return doc


def _read_text(path: Path, display: str) -> str:
    """A matrix file's text: a regular file (a FIFO would block, a device never end) of at most
    MAX_MATRIX_BYTES, in UTF-8."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise CiwheelsError(f"matrix file not found: {display}") from None
    except OSError as e:
        raise CiwheelsError(f"cannot read matrix file {display}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise CiwheelsError(f"{display} is a folder, not a matrix file",
                                hint="pass the folder itself with --matrix to read the *.yaml files in it")
        raise CiwheelsError(f"{display} is not a regular file; refusing to read it as a matrix")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_MATRIX_BYTES + 1)
        except OSError as e:
            raise CiwheelsError(f"cannot read matrix file {display}: {e.strerror or e}") from None
    if len(data) > MAX_MATRIX_BYTES:
        raise CiwheelsError(f"the matrix file is larger than the limit of {MAX_MATRIX_BYTES // 1024} KiB",
                            file=display, hint="Split it into several files under matrix/")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CiwheelsError(f"the matrix file is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})",
                            file=display) from None


def _prescan(text: str, display: str) -> None:
    """Limits that must hold before the YAML parser sees the text: its size, and the nesting
    of flow collections (the parser recurses, and takes seconds to fail on thousands of `[`)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MATRIX_BYTES:
        raise CiwheelsError(f"the matrix file is {size} bytes, more than the limit of {MAX_MATRIX_BYTES // 1024} KiB",
                            file=display, hint="Split it into several files under matrix/")
    depth = 0
    line = 1
    for m in re.finditer(r"[\[\]{}\n]", text):
        ch = m.group(0)
        if ch == "\n":
            line += 1
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise CiwheelsError(f"the matrix is nested too deeply (the limit is {MAX_DEPTH} levels)",
                                    file=display, line=line)
        else:
            depth = max(0, depth - 1)
    bad = _UNPRINTABLE.search(text)
    if bad is not None:
        ch = bad.group()
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        name = {"\x00": " (NUL)", "\x1b": " (ESC)", "\x7f": " (DEL)", "\ufeff": " (a byte order mark)"}.get(ch, "")
        raise CiwheelsError(f"the character U+{ord(ch):04X}{name} is not allowed in YAML", file=display, line=line,
                            column=column, hint="Remove it (a file that is not text, or a copy-paste accident?)")


# what YAML refuses in a file (YAML 1.2, 5.1: the printable characters, tab, line breaks, NEL;
# a byte order mark only at the very start); lone surrogates are found by the validator, with the key
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]|(?<!^)\ufeff")


def validate_data(data: Any, schema: dict, file: str, path: Path_, catalog: Catalog) -> Any:
    """Validate plain data (e.g. a catalog table) with the same rules and messages as a matrix."""
    doc = MatrixDoc(file, {}, {(): (1, 1)}, {})
    return _Validator(doc, catalog).walk(data, schema, path)


_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "tagged": "a value with a YAML tag (matrix files use no tags such as !x)",
}


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if type(value).__name__ == "TaggedScalar":
        return "tagged"  # `!tag value`: matrix files use no YAML tags
    return type(value).__name__


def _type_ok(actual: str, wanted: str | list[str]) -> bool:
    wanted = [wanted] if isinstance(wanted, str) else wanted
    return actual in wanted or (actual == "integer" and "number" in wanted)


def _shape(schema: dict) -> str:
    if "anyOf" in schema or "oneOf" in schema:
        shapes = []
        for s in schema.get("anyOf") or schema["oneOf"]:
            if _shape(s) not in shapes:
                shapes.append(_shape(s))
        return " or ".join(shapes)
    if "enum" in schema and "type" not in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    t = schema.get("type")
    if t == "array":
        return "a list of " + _shape(schema.get("items", {})).removeprefix("a ").removeprefix("an ") + "s"
    if isinstance(t, list):
        return " or ".join(_TYPE_NAMES[x] for x in t)
    return _TYPE_NAMES.get(t, "a value")


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Validator:
    def __init__(self, doc: MatrixDoc, catalog: Catalog) -> None:
        self.doc = doc
        self.cat = catalog
        self.visited = 0  # values walked, each use of an alias again: bounded by MAX_VALUES

    def _count(self, node: Any, path: Path_) -> None:
        self.visited += 1
        if self.visited > MAX_VALUES:
            raise self.doc.error(path, f"the matrix expands to more than {MAX_VALUES} values (every use of a YAML "
                                 "alias counts again), the limit")
        if len(path) > MAX_DEPTH:
            raise self.doc.error(path, f"the matrix is nested too deeply (the limit is {MAX_DEPTH} levels)")
        if isinstance(node, (list, dict)) and len(node) > MAX_ITEMS:
            raise self.doc.error(path, f"{describe_path(path)} has {len(node)} entries, more than the limit of "
                                 f"{MAX_ITEMS}")

    def _better(self, path: Path_, value: Any) -> str | None:
        """A sharper message for a known value in the wrong place."""
        if len(path) >= 2 and path[0] == "isa" and isinstance(value, str):
            level = self.cat.levels.get(value) or next(
                (lv for lv in self.cat.levels.values() if value in lv.aliases), None)
            if level is not None:
                return f"ISA level {value!r} belongs to {level.arch}, not {path[1]}"
        if len(path) == 2 and path[0] == "policy" and isinstance(value, str):
            canon = self.cat.policy_alias(value)
            if canon is not None:
                return f"policy {value!r} is for {self.cat.policies[canon].libc}, not {path[1]}"
        return None

    def _encodable(self, text: str, path: Path_) -> None:
        """A lone surrogate (YAML's "\\ud800") cannot be written as UTF-8 anywhere: not into a
        pipeline, an environment, a report or a terminal."""
        bad = _SURROGATE.search(text)
        if bad is not None:
            raise self.doc.error(path, f"{describe_path(path)} contains the lone surrogate U+{ord(bad.group()):04X}, "
                                 "which is not a character and cannot be written as UTF-8",
                                 hint="Remove the \\u escape")

    def walk(self, node: Any, schema: dict, path: Path_) -> Any:
        self._count(node, path)
        if isinstance(node, str):
            self._encodable(node, path)
        if "anyOf" in schema or "oneOf" in schema:
            return self._any_of(node, schema, path)
        if "not" in schema:
            try:
                self.walk(node, schema["not"], path)
            except CiwheelsError:
                pass
            else:
                raise self.doc.error(path, f"{describe_path(path)}: {_plain(node)!r} is not allowed here")
        actual = _type_of(node)
        wanted = schema.get("type")
        if wanted and not _type_ok(actual, wanted):
            hint = None
            if actual == "number" and _type_ok("string", wanted):
                hint = f"YAML reads {node!r} as a number: put it in quotes"
            shown = f" {_plain(node)!r}" if actual not in ("object", "array", "tagged") else ""
            raise self.doc.error(
                path, f"{describe_path(path)} must be {_shape(schema)}, not {_TYPE_NAMES.get(actual, actual)}{shown}",
                hint=hint)
        if "const" in schema and (actual in ("object", "array") or _plain(node) != schema["const"]):
            shown = f" {_plain(node)!r}" if actual not in ("object", "array", "tagged") else ""
            raise self.doc.error(path, f"{describe_path(path)} must be {schema['const']!r}, not "
                                 f"{_TYPE_NAMES.get(actual, actual)}{shown}")
        if actual == "object":
            return self._object(node, schema, path)
        if actual == "array":
            return self._array(node, schema, path)
        value = _plain(node)
        if actual == "number" and not math.isfinite(value):
            raise self.doc.error(path, f"{describe_path(path)} must be a finite number, not {value}",
                                 hint="YAML reads .nan, .inf and numbers too large for a float (1e400) as such")
        if "enum" in schema and value not in schema["enum"]:
            what = schema.get("title") or next((p for p in reversed(path) if isinstance(p, str)), "value")
            allowed = [v for v in schema.get("x-names", schema["enum"]) if v in schema["enum"]]
            raise self.doc.error(path, self._better(path, value) or f"unknown {what} {value!r} in {describe_path(path)}",
                                 value=value, allowed=allowed)
        if schema.get("x-format") == "cron" and isinstance(value, str):

            wrong = problem(value)
            if wrong:
                raise self.doc.error(path, f"{describe_path(path)}: {value!r} is not a cron schedule: {wrong}",
                                     hint="e.g. '17 3 * * 1' (03:17 UTC every Monday)")
        if "pattern" in schema and not re.search(schema["pattern"], str(value)):
            raise self.doc.error(path, f"{describe_path(path)}: {value!r} is not a valid value "
                                 f"(it must match {schema['pattern']})", value=value)
        if "minimum" in schema and value < schema["minimum"]:
            raise self.doc.error(path, f"{describe_path(path)} must be at least {schema['minimum']}, not {value}")
        if "maximum" in schema and value > schema["maximum"]:
            raise self.doc.error(path, f"{describe_path(path)} must be at most {schema['maximum']}, not {value}")
        return value

    def _any_of(self, node: Any, schema: dict, path: Path_) -> Any:
        """The first option the value satisfies. When none does, the error of the one option of
        the value's type (it is the most precise), else a summary of the shapes allowed."""
        actual = _type_of(node)
        options = schema.get("anyOf") or schema.get("oneOf")
        errors = []
        for option in options:
            try:
                return self.walk(node, option, path)
            except CiwheelsError as e:
                kind = option.get("type", _type_of(option["const"]) if "const" in option else actual)
                if _type_ok(actual, kind) or "enum" in option and "type" not in option:
                    errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        self._mismatch(node, schema, path)

    def _mismatch(self, node: Any, schema: dict, path: Path_):
        actual = _type_of(node)
        shown = f" {_plain(node)!r}" if actual not in ("object", "array", "tagged") else ""
        raise self.doc.error(path, f"{describe_path(path)} must be {_shape(schema)}, "
                             f"not {_TYPE_NAMES.get(actual, actual)}{shown}")

    def _array(self, node: Any, schema: dict, path: Path_) -> list:
        items = schema.get("items", {})
        out = []
        for i, item in enumerate(node):
            self._mark(node, i, path + (i,))
            out.append(self.walk(item, items, path + (i,)))
        if len(out) < schema.get("minItems", 0):
            raise self.doc.error(path, f"{describe_path(path)} must not be empty")
        return out

    def _object(self, node: Any, schema: dict, path: Path_) -> dict:
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        out = {}
        for key in node:
            sub = path + (str(key),)
            self._mark(node, key, sub)
            if not isinstance(key, str):
                raise self.doc.error(sub, f"keys in {describe_path(path)} must be strings, not {key!r}")
            self._encodable(key, sub)
            if names:
                if "enum" in names and key not in names["enum"]:
                    raise self._key_error(sub, key, names["enum"], path)
                if "pattern" in names and not re.search(names["pattern"], key):
                    raise self._key_error(sub, key, None, path, pattern=names["pattern"])
            pattern = next((sch for pat, sch in schema.get("patternProperties", {}).items() if re.search(pat, key)),
                           None)
            if key in props:
                out[key] = self.walk(node[key], props[key], sub)
            elif pattern is not None:
                out[key] = self.walk(node[key], pattern, sub)
            elif extra is False:
                owned = schema.get("x-owned", {}).get(key)
                if owned:
                    line, col = self.doc.key_positions.get(sub, (None, None))
                    raise CiwheelsError(f"{key!r} cannot be set in {describe_path(path)}: the matrix sets it with "
                                        f"{owned}", file=self.doc.file, line=line, column=col)
                raise self._key_error(sub, key, list(props), path)
            elif isinstance(extra, dict):
                out[key] = self.walk(node[key], extra, sub)
            else:
                out[key] = _plain(node[key])
        missing = [k for k in schema.get("required", ()) if k not in out]
        if missing:
            raise self.doc.error(path, f"{describe_path(path)} is missing {', '.join(repr(m) for m in missing)}")
        if len(out) < schema.get("minProperties", 0):
            raise self.doc.error(path, f"{describe_path(path)} must not be empty",
                                 allowed=list(props) if props else None)
        return out

    def _key_error(self, path: Path_, key: str, allowed: list[str] | None, parent: Path_, pattern: str = ""):
        line, col = self.doc.key_positions.get(path, (None, None))
        where = "at the top level" if not parent else f"in {describe_path(parent)}"
        hint = f"keys here must match {pattern}" if pattern else None
        return CiwheelsError(f"unknown key {key!r} {where}", file=self.doc.file, line=line, column=col,
                             value=key, allowed=allowed, hint=hint)

    def _mark(self, node: Any, key: Any, path: Path_) -> None:
        lc = getattr(node, "lc", None)
        if lc is None:
            return
        try:
            if isinstance(key, int) and isinstance(node, list):
                line, col = lc.item(key)
                self.doc.positions[path] = (line + 1, col + 1)
            else:
                kl, kc = lc.key(key)
                self.doc.key_positions[path] = (kl + 1, kc + 1)
                vl, vc = lc.value(key)
                self.doc.positions[path] = (vl + 1, vc + 1)
        except (KeyError, IndexError, TypeError):
            pass


def _plain(value: Any) -> Any:
    """ruamel's scalar subclasses -> plain Python values."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value
