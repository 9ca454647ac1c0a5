"""Hardening, the matrix loader: any input, hostile or broken, ends in cells or in one
paragraph naming a limit or a problem, quickly and within memory; never a traceback.
Generative (hypothesis) where the class is open-ended: YAML built from the schema's own
vocabulary with anchors and aliases, arbitrary text, arbitrary cron strings."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_ciwheels

from ciwheels.matrix import load
from ciwheels.catalog import load_catalog
from ciwheels.matrix.cron import problem
from ciwheels.core.errors import CiwheelsError
from ciwheels.matrix.load import load_matrix
from ciwheels.project.open import open_docs

CATALOG = load_catalog()


def outcome(text: str, tmp: Path) -> str:
    """'ok' or the error's message; anything else (an exception, a hang) fails the test."""
    path = tmp / "wheels.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        open_docs(tmp, [load_matrix(path, CATALOG, display="wheels.yaml")], CATALOG)
    except CiwheelsError as e:
        message = str(e)
        assert "\n" not in message and len(message) < 5000
        return message
    return "ok"


def timed(text: str, tmp: Path, limit: float = 3.0) -> str:
    start = time.monotonic()
    result = outcome(text, tmp)
    assert time.monotonic() - start < limit, f"took {time.monotonic() - start:.1f}s: {result}"
    return result


# -- bounded: aliases, nesting, size, length ------------------------------------------------------
def billion_laughs(levels: int, fan: int) -> str:
    lines = ["python: [cp312]", "overrides:", "  - &l0 {select: {arch: x86_64}, environment: {A: x}}"]
    for i in range(1, levels):
        lines.append(f"  - &l{i} {{select: {{arch: x86_64}}, environment: {{A: x}}, test-requires: &t{i} "
                     f"[{', '.join(['a'] * fan)}]}}")
    body = "".join(f"  - *l{levels - 1}\n" for _ in range(3000))
    return "\n".join(lines) + "\n" + body


def test_alias_bombs_end_quickly_naming_the_limit(tmp_path):
    message = timed(billion_laughs(4, 50), tmp_path)
    assert f"more than {load.MAX_VALUES} values" in message and "alias" in message
    # aliases of aliases of lists: every use counts
    lines = ["python: [cp312]", "x0: &x0 [a, b, c, d, e, f, g, h, i, j]"]
    for i in range(1, 7):
        lines.append(f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]")
    lines.append("overrides: [{select: {arch: x86_64}, test-requires: *x6}]")
    message = timed("\n".join(lines[:1] + ["overrides:", "  - {select: {arch: x86_64}, test-requires: &x0 [a]}"]
                              + [f"  - {{select: {{arch: x86_64}}, test-requires: [{', '.join(['*x0'] * 1)}]}}"]
                              * 20000), tmp_path, 6)
    assert "limit" in message


@pytest.mark.parametrize("text", [
    "python: " + "[" * 5000 + "]" * 5000,
    "python: " + "{a: " * 3000 + "1" + "}" * 3000,
    "python:\n" + "- " * 3000 + "cp312\n",
    "python:\n" + "".join(" " * i + f"k{i}:\n" for i in range(500)),
], ids=["flow-lists", "flow-maps", "block-lists", "block-maps"])
def test_deep_nesting_is_an_error_naming_the_limit(tmp_path, text):
    assert f"nested too deeply (the limit is {load.MAX_DEPTH} levels)" in timed(text, tmp_path)


@pytest.mark.slow
def test_size_and_length_limits(tmp_path):
    many = "python: [" + ", ".join(["cp312", "cp313"] * 20_000) + "]\n"  # 40,000 Pythons
    assert f"larger than the limit of {load.MAX_MATRIX_BYTES // 1024} KiB" in timed(many, tmp_path)
    long_list = "python: [" + ", ".join(["cp312"] * (load.MAX_ITEMS + 1)) + "]\n"
    assert f"more than the limit of {load.MAX_ITEMS}" in timed(long_list, tmp_path)
    dup = "python: [" + ", ".join(["cp312"] * 5000) + "]\n"
    assert "twice" in timed(dup, tmp_path, 2)


def test_a_huge_value_is_not_repeated_in_full(tmp_path):
    huge = "x" * (200 * 1024)
    message = timed(f"python: [cp312]\narch: [{huge}]\n", tmp_path)
    assert "characters)" in message and len(message) < 1500


# -- files that are not matrix files ---------------------------------------------------------------
def test_folders_fifos_and_non_utf8(tmp_path):
    project = tmp_path / "p"
    (project / "matrix" / "wheels.yaml").mkdir(parents=True)  # a folder named wheels.yaml
    proc = run_ciwheels("matrix", "--project", str(project))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    with pytest.raises(CiwheelsError, match="is a folder"):
        load_matrix(project / "matrix" / "wheels.yaml")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(CiwheelsError, match="not a regular file"):
        load_matrix(fifo)
    assert time.monotonic() - start < 1
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("python: [cp312]\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(CiwheelsError, match=r"not UTF-8 text \(byte 0xe9"):
        load_matrix(latin)


# -- cron -----------------------------------------------------------------------------------------
def test_a_cron_that_is_not_a_cron_is_refused(tmp_path):
    for bad in ("a b c d e", "60 * * * *", "* * * * * *", "*/0 * * * *", "1-0 * * * *"):
        message = outcome(f'python: [cp312]\nrender: {{schedule: "{bad}"}}\n', tmp_path)
        assert "is not a cron schedule" in message, bad
    assert outcome('python: [cp312]\nrender: {schedule: "17 3 * * 1"}\n', tmp_path) == "ok"


_field = st.one_of(st.just("*"), st.integers(0, 99).map(str), st.text("0123456789*/-,abcJANmon", min_size=1,
                                                                       max_size=8))


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(fields=st.lists(_field, min_size=0, max_size=7))
def test_cron_checker_is_total_and_agrees_with_a_reference(fields):
    """Generative: any 0-7 fields give a verdict (never an exception); what it accepts is
    accepted by an independent reference check of the same rules."""
    text = " ".join(fields)
    verdict = problem(text)
    if verdict is None:
        assert len(text.split()) == 5
        ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
        for field, (low, high) in zip(text.split(), ranges):
            for part in field.split(","):
                base, _, step = part.partition("/")
                assert not step or 0 < int(step) <= high
                for n in (base.split("-") if base != "*" else []):
                    assert n.isdigit() and low <= int(n) <= high or n.lower() in (
                        "jan feb mar apr may jun jul aug sep oct nov dec sun mon tue wed thu fri sat".split())


# -- generative: the loader on hostile YAML -------------------------------------------------------
_KEYS = ["python", "arch", "libc", "isa", "policy", "exclude", "include", "overrides", "select", "environment",
         "packages", "name", "versions", "registries", "url", "render", "schedule", "images", "runners",
         "cibuildwheel", "test-requires", "timeout-minutes", "identifier", "x86_64", "glibc", "musl"]
_SCALARS = ["cp312", "cp313", "cp314t", "x86_64", "aarch64", "riscv64", "glibc", "musl", "x86-64-v3", "rv64gc",
            "manylinux_2_28", "3.12", "1.0", "1.0/../..", "17 3 * * 1", "a b c d e", "*", "cp3{9..13}-*",
            "{a,b}{c,d}{e,f}", "${{ secrets.X }}", "~", "null", "true", "0", "-1", "1e999", "'", "\"", "\\x00",
            "https://u:p@h/x", "é", "\u202e"]
_scalar = st.one_of(st.sampled_from(_SCALARS), st.integers(-10, 10**20), st.booleans(), st.none(),
                    st.text(max_size=12))
_value = st.recursive(_scalar, lambda kids: st.lists(kids, max_size=4)
                      | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), kids, max_size=4),
                      max_leaves=25)


def _yaml(value, anchors: list[str], depth: int = 0) -> str:
    """Flow-style YAML of `value`; every third collection gets an anchor, and a list item may
    be replaced by an alias to an earlier anchor (shared structure, as a bomb would use)."""
    import json

    if isinstance(value, dict):
        body = ", ".join(f"{json.dumps(k)}: {_yaml(v, anchors, depth + 1)}" for k, v in value.items())
        text = "{" + body + "}"
    elif isinstance(value, list):
        items = [(f"*{anchors[len(anchors) // 2]}" if anchors and i % 3 == 2 else _yaml(v, anchors, depth + 1))
                 for i, v in enumerate(value)]
        text = "[" + ", ".join(items) + "]"
    else:
        return json.dumps(value)
    if depth and len(anchors) < 50 and hash(text) % 3 == 0:
        anchors.append(f"a{len(anchors)}")
        return f"&{anchors[-1]} {text}"
    return text


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(doc=st.dictionaries(st.sampled_from(_KEYS), _value, min_size=1, max_size=6))
def test_generated_matrices_load_or_fail_with_one_paragraph(tmp_path, doc):
    anchors: list[str] = []  # shared by all keys: an alias may point into another key's value
    text = "\n".join(f"{k}: {_yaml(v, anchors)}" for k, v in doc.items()) + "\n"
    timed(text, tmp_path, 5)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_arbitrary_text_loads_or_fails_with_one_paragraph(tmp_path, text):
    timed("python: [cp312]\n" + text, tmp_path, 5)
    timed(text, tmp_path, 5)


def test_two_include_entries_for_one_cell_are_an_error(tmp_path):
    text = ("python: [cp312]\ninclude:\n  - {python: cp313, arch: aarch64, environment: {A: one}}\n"
            "  - {python: cp313, arch: aarch64, environment: {A: two}}\n")
    message = outcome(text, tmp_path)
    assert message != "ok" and "include" in message


def test_a_2mb_value_in_an_error_is_cut():
    message = str(CiwheelsError(f"bad value {'v' * (2 << 20)!r}", value="v" * (2 << 20), allowed=["a", "b"],
                                hint="x" * (2 << 20)))
    assert len(message) < 1000 and "characters)" in message and "\n" not in message


def test_an_unreadable_matrix_folder_is_the_usual_error(tmp_path, monkeypatch):
    """Tests run as root, who can read any folder: the permission error is raised by a patched
    Path.iterdir for the one folder (a labelled simulation of `chmod 000 matrix`)."""
    from click.testing import CliRunner

    from ciwheels.cli import cli as ciwheels_cli

    (tmp_path / "matrix").mkdir()
    (tmp_path / "matrix" / "wheels.yaml").write_text("python: [cp312]\n")
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == tmp_path / "matrix":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    result = CliRunner().invoke(ciwheels_cli, ["matrix", "--project", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Permission denied" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("text", ["!0", "!!python/object:os.system x", "python: [!t cp312]"])
def test_yaml_tags_are_the_usual_error(tmp_path, text):
    """Found by the generative test above: a tagged scalar (`!0`) has no position and crashed."""
    message = outcome(text, tmp_path)
    assert message != "ok" and "YAML tag" in message
