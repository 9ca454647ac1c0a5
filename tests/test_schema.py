"""The exported JSON Schema is a valid Draft 2020-12 schema, accepts every good matrix, and
rejects what the loader rejects for shape reasons (checked with the real jsonschema library)."""

from __future__ import annotations

import re

import jsonschema
import pytest
from ruamel.yaml import YAML

from ciwheels.catalog import load_catalog
from ciwheels.matrix.schema import matrix_schema
from conftest import BAD, REPO

SCHEMA = matrix_schema(load_catalog())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
GOOD = sorted(REPO.glob("examples/*/matrix/*.yaml")) + sorted(REPO.glob("matrix/*.yaml"))
# corpus entries whose problem is one of shape (JSON Schema sees it) rather than meaning
SHAPE = ["unknown_key", "unknown_python", "unknown_arch", "unknown_level", "level_of_other_arch",
         "python_not_a_list", "python_as_number", "policy_wrong_libc", "unknown_libc", "exclude_unknown_key",
         "package_without_versions", "timeout_zero", "top_level_list", "bad_env_name", "policy_unknown",
         "isa_not_a_map", "cibuildwheel_bad"]


def _load(path):
    return YAML(typ="safe").load(path.read_text())


def test_schema_is_valid():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_good_matrices_validate(path):
    assert list(VALIDATOR.iter_errors(_load(path))) == []


@pytest.mark.parametrize("name", SHAPE)
def test_shape_errors_are_schema_errors(name):
    path = BAD / f"{name}.yaml"
    assert path.exists()
    assert list(VALIDATOR.iter_errors(_load(path))), f"{name} passes the schema but the loader rejects it"


def test_every_key_is_described():
    def walk(node, where):
        if ".cibuildwheel-options.properties." in where:
            return  # cibuildwheel's own schema: every option is described, its inner parts are its business
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                for key, sub in node["properties"].items():
                    assert "description" in sub, f"{where}.{key}"
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else key)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(SCHEMA, "")
    assert re.match(r"https://", SCHEMA["$id"])
