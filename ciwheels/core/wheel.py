"""Wheel file names, plain and variant (PEP 825 labels), and the index-level
`{name}-{version}-variants.json` files: the leaf that every stage handling wheels reads names with."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

LABEL = re.compile(r"[0-9a-z_.]+")
INDEX_SUFFIX = "-variants.json"


class InvalidWheelName(ValueError):
    pass


@dataclass(frozen=True)
class WheelName:
    filename: str
    name: str  # canonical project name
    version: str
    build: tuple
    tags: frozenset[Tag]
    label: str | None  # the variant label; None: a plain wheel
    plain: str  # the file name without the label

    @property
    def dist(self) -> str:
        """The distribution part of the file name, as written (e.g. `my_pkg`)."""
        return self.filename.split("-", 1)[0]

    @property
    def file_version(self) -> str:
        return self.filename.split("-")[1]


def parse_wheel_name(filename: str) -> WheelName:
    """A plain or variant wheel file name. Raises InvalidWheelName."""
    if not filename.endswith(".whl"):
        raise InvalidWheelName(f"{filename!r} does not end in .whl")
    parts = filename[:-4].split("-")
    label = None
    if len(parts) == 7 or (len(parts) == 6 and not parts[2][:1].isdigit()):
        # a python tag never starts with a digit, a build tag always does
        label = parts.pop()
        if not LABEL.fullmatch(label):
            raise InvalidWheelName(f"{filename!r}: variant label {label!r} must match ^[0-9a-z_.]+$")
    elif len(parts) not in (5, 6):
        raise InvalidWheelName(f"{filename!r} has {len(parts)} dash-separated parts; a wheel has 5 to 7")
    plain = "-".join(parts) + ".whl"
    try:
        name, version, build, tags = parse_wheel_filename(plain)
    except InvalidWheelFilename as e:
        raise InvalidWheelName(str(e)) from None
    return WheelName(filename, str(name), str(version), build, tags, label, plain)


def index_file_name(wheel: WheelName) -> str:
    """`{name}-{version}-variants.json` of a wheel's release, spelt as its file name spells them."""
    return f"{wheel.dist}-{wheel.file_version}{INDEX_SUFFIX}"


_INDEX_FILE = re.compile(r"([A-Za-z0-9._]+)-([A-Za-z0-9._!+]+)" + re.escape(INDEX_SUFFIX))


def project_of_index_file(filename: str) -> tuple[str, str] | None:
    """('name', 'version') of a `{name}-{version}-variants.json`, else None."""
    m = _INDEX_FILE.fullmatch(filename)
    return (m.group(1), m.group(2)) if m else None
