"""The settings cascade: how the layers that set a cell's build settings are merged.

Layers, lowest precedence first (each one optional):

    0  defaults.toml [settings]          (catalog; validated like a matrix)
    0b builder mode: the package version's own [tool.cibuildwheel] from its sdist, then its
       overrides that match (cibwconfig.SdistConfig; `sdist-config: false` leaves it out)
    1  the matrix file's top level
    2  the cell's `packages:` entry      (builder mode)
    3  every `overrides:` entry whose selector matches, in file order
    4  the `include:` entry that added the cell

Each setting has one declared rule for how a higher layer meets a lower one (in the spirit of
cibuildwheel's `InheritRule`). The ISA flags are not a layer: they are a separate input that
is always combined with the cascade's result (`combine_isa`), so no layer can drop them."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from ciwheels.matrix.model import Origin
from ciwheels.matrix.normalise import Layer


class Rule(Enum):
    REPLACE = "replace"  # a higher layer's value replaces the lower one's
    MERGE = "merge"  # mappings, per key: a higher layer's entry replaces the lower one's entry


RULES: dict[str, Rule] = {
    "environment": Rule.MERGE,
    "test-command": Rule.REPLACE,
    "test-requires": Rule.REPLACE,
    "before-all": Rule.REPLACE,
    "before-build": Rule.REPLACE,
    "build-requires": Rule.REPLACE,
    "timeout-minutes": Rule.REPLACE,
    "cibuildwheel-options": Rule.MERGE,
    "native-compilers": Rule.REPLACE,
    "cross": Rule.REPLACE,
}


class IsaRule(Enum):
    PREPEND = "prepend"  # ISA flags first, then the cascade's value: `-march=x86-64-v3 -mneeded -O2`
    DEFAULT = "default"  # the cascade's value if it sets one, else the ISA value


ISA_RULES: dict[str, IsaRule] = {
    "CFLAGS": IsaRule.PREPEND,
    "CXXFLAGS": IsaRule.PREPEND,
    "RUSTFLAGS": IsaRule.PREPEND,
    "QEMU_CPU": IsaRule.DEFAULT,  # how emulation runs the code; a matrix may know its QEMU better
}


def env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cascade(layers: Sequence[Layer]) -> tuple[dict[str, Any], dict[str, str], dict[str, Origin]]:
    """(settings, environment, origins) of the layers, merged by RULES. `origins` has one entry
    per setting and one per entry of a merged mapping (`environment.VAR`)."""
    settings: dict[str, Any] = {"cibuildwheel-options": {}}
    env: dict[str, str] = {}
    origins: dict[str, Origin] = {}
    for layer in layers:
        for key, value in layer.values.items():
            rule = RULES[key]
            if rule is Rule.MERGE:
                target = env if key == "environment" else settings[key]
                for sub, v in value.items():
                    target[sub] = env_value(v) if key == "environment" else v
                    origins[f"{key}.{sub}"] = layer.origins[f"{key}.{sub}"]
            else:
                settings[key] = value
                origins[key] = layer.origins[key]
    tr = settings.get("test-requires", ())
    settings["test-requires"] = tuple([tr] if isinstance(tr, str) else tr)
    settings["build-requires"] = tuple(settings.get("build-requires", ()))
    return settings, env, origins


def combine_isa(isa_env: dict[str, str], isa_origin: Origin, env: dict[str, str],
                origins: dict[str, Origin]) -> tuple[dict[str, str], dict[str, Origin]]:
    """The final environment: the ISA flags combined with the cascade's environment by ISA_RULES.
    Variables the ISA family does not set pass through unchanged."""
    out = dict(isa_env)
    out_origins = {f"environment.{var}": isa_origin for var in isa_env}
    for var, value in env.items():
        key = f"environment.{var}"
        isa_value = isa_env.get(var)
        if isa_value is None or ISA_RULES.get(var, IsaRule.DEFAULT) is IsaRule.DEFAULT:
            out[var] = value
            out_origins[key] = origins[key]
        else:
            out[var] = f"{isa_value} {value}".strip()
            out_origins[key] = Origin("combined", detail=f"{isa_origin.detail}, then {origins[key]}")
    return out, out_origins

