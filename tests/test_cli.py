"""The CLI as users run it, on real files: in-process through click's runner (fast), and a few
runs of the real child process (`python -m ciwheels`) for what only a process shows (exit codes,
what reaches stderr, the entry point)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import EXAMPLE, derive_cells, run_ciwheels


def test_matrix_table_on_the_example():
    proc = run_ciwheels("matrix", "--project", "examples/cext-demo", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["cell", "python", "policy", "arch", "isa", "image", "runs"]
    ids, dropped = derive_cells()
    assert sorted(line.split()[0] for line in lines[2:]) == sorted(ids)
    row = next(line for line in lines if line.startswith("cp312-manylinux_riscv64-rva23u64 "))
    assert "manylinux_2_35" in row and "(custom)" in row and "emulated" in row
    assert f"{len(ids)} cells from examples/cext-demo/matrix/wheels.yaml, {dropped} dropped" in proc.stderr


def test_matrix_json():
    proc = run_ciwheels("matrix", "--project", str(EXAMPLE), "--json", check=True)
    cells = json.loads(proc.stdout)
    ids, _ = derive_cells()
    assert {"id", "python", "libc", "policy", "arch", "isa", "identifier"} <= set(cells[0])
    assert sorted(c["id"] for c in cells) == sorted(ids)
    assert len({c["id"] for c in cells}) == len(cells)


def test_explain_names_file_and_line():
    proc = run_ciwheels("explain", "cp313-manylinux_x86_64-x86-64-v3", "--project", "examples/cext-demo",
                        check=True)
    out = proc.stdout
    assert re.search(r"^  isa +x86-64-v3 +<- examples/cext-demo/matrix/wheels.yaml:8 \(isa.x86_64\[1\]\)$", out, re.M)
    assert re.search(r"^  environment.CFLAGS +-O3 -DNDEBUG -fno-strict-overflow -march=x86-64-v3 -mneeded +<- catalog: isa.toml x86-64-v3$", out, re.M)
    assert "CIBW_BUILD=cp313-manylinux_x86_64" in out
    j = json.loads(run_ciwheels("explain", "cp313-manylinux_x86_64-x86-64-v3", "--project", str(EXAMPLE),
                                "--json", check=True).stdout)
    policy = next(s for s in j["settings"] if s["setting"] == "policy")
    assert policy["value"] == "manylinux_2_28" and "wheels.yaml:5" in policy["origin"]


def test_explain_dropped_and_summary():
    proc = run_ciwheels("explain", "cp314t-manylinux_riscv64-rv64gc", "--project", str(EXAMPLE), check=True)
    assert "is not built: excluded by exclude[0]" in proc.stdout and "wheels.yaml:11" in proc.stdout
    summary = run_ciwheels("explain", "--project", str(EXAMPLE), check=True).stdout
    ids, dropped = derive_cells()
    assert summary.startswith(f"{len(ids)} cells, {dropped} dropped")


def test_explain_unknown_cell_suggests():
    """A real process: a user error is exit code 2 and one paragraph on stderr, nothing else."""
    proc = run_ciwheels("explain", "cp313-manylinux_x86_64-x86-64-v2", "--project", str(EXAMPLE), subprocess=True)
    assert proc.returncode == 2
    assert "Did you mean 'cp313-manylinux_x86_64-x86-64-v3'?" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
    assert proc.stderr.startswith("error: ")


def test_no_matrix_files(tmp_path):
    proc = run_ciwheels("matrix", "--project", str(tmp_path))
    assert proc.returncode == 2
    assert "no matrix files in" in proc.stderr and "ciwheels init" in proc.stderr


def test_schema_command(tmp_path):
    schema = json.loads(run_ciwheels("schema", check=True).stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert "cp314t" in schema["properties"]["python"]["items"]["enum"]
    out = tmp_path / "s.json"
    run_ciwheels("schema", "-o", str(out), check=True)
    assert json.loads(out.read_text()) == schema


def test_help_explains_each_command():
    top = run_ciwheels("--help", check=True, subprocess=True).stdout  # `python -m ciwheels` itself
    assert top.startswith("Usage: ciwheels [OPTIONS] COMMAND")
    for command in ("matrix", "explain", "schema", "init"):
        assert command in top
        sub = run_ciwheels(command, "--help", check=True).stdout
        assert "Usage: ciwheels " + command in sub


def test_init_from_cibuildwheel_settings(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\nrequires-python = ">=3.12"\n'
        '[tool.cibuildwheel]\nbuild = "cp3{12,13,14}-*"\nskip = "*-musllinux_aarch64"\n'
        'archs = ["x86_64", "aarch64"]\ntest-command = "pytest {project}"\nenvironment = {FOO = "1"}\n'
        '[tool.cibuildwheel.linux]\nmanylinux-x86_64-image = "manylinux_2_34"\n')
    proc = run_ciwheels("init", "--project", str(tmp_path), check=True)
    assert "wrote" in proc.stderr
    cells = json.loads(run_ciwheels("matrix", "--project", str(tmp_path), "--json", check=True).stdout)
    got = sorted(c["identifier"] for c in cells)
    expected = sorted(f"cp3{v}-{p}_{a}" for v in (12, 13, 14) for p, a in
                      [("manylinux", "x86_64"), ("musllinux", "x86_64"), ("manylinux", "aarch64")])
    assert got == expected
    x86 = next(c for c in cells if c["arch"] == "x86_64" and c["libc"] == "glibc")
    assert x86["policy"] == "manylinux_2_34" and x86["environment"]["FOO"] == "1"
    assert x86["test_command"] == "pytest {project}"
    again = run_ciwheels("init", "--project", str(tmp_path))
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.slow  # runs the real cibuildwheel
def test_init_matches_cibuildwheel_selection(tmp_path):
    """`init` reproduces what cibuildwheel itself would build for the same pyproject."""
    import shutil
    import subprocess

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\nrequires-python = ">=3.11"\n'
        '[tool.cibuildwheel]\nskip = "cp311-musllinux* *-musllinux_riscv64"\narchs = ["x86_64", "riscv64"]\n'
        'enable = ["pypy"]\n')
    run_ciwheels("init", "--project", str(tmp_path), check=True)
    cells = json.loads(run_ciwheels("matrix", "--project", str(tmp_path), "--json", check=True).stdout)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CIBW_")}
    theirs = subprocess.run([shutil.which("cibuildwheel"), "--platform", "linux", "--print-build-identifiers",
                             str(tmp_path)], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert sorted(c["identifier"] for c in cells) == sorted(theirs)


def test_version():
    import ciwheels

    assert run_ciwheels("--version", check=True).stdout == f"ciwheels, version {ciwheels.__version__}\n"


# -- the test helper itself: in-process runs must look like the real process -------------

@pytest.mark.parametrize("args", [
    ("matrix", "--project", "examples/cext-demo"),
    ("explain", "cp313-manylinux_x86_64-x86-64-v2", "--project", "examples/cext-demo"),
    ("render", "--check", "--project", "examples/cext-demo"),
    ("matrix", "--no-such-option"),
], ids=["table", "user-error", "render-check", "usage-error"])
def test_in_process_runs_match_the_real_process(args):
    """Same exit code, stdout and stderr: what the in-process runs of the other tests see is what
    users see (e.g. nothing written to a stream captured before the runner swapped it)."""
    inside, child = run_ciwheels(*args), run_ciwheels(*args, subprocess=True)
    assert (inside.returncode, inside.stdout, inside.stderr) == (child.returncode, child.stdout, child.stderr)


def test_in_process_crash_shows_a_traceback(monkeypatch):
    """An unexpected exception in a command: exit code 1 and the traceback on stderr, as the
    interpreter prints it, so that `"Traceback" not in proc.stderr` checks mean something."""
    import click

    from ciwheels.cli import cli

    def boom():
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.commands, "boom", click.Command("boom", callback=boom))
    proc = run_ciwheels("boom")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "RuntimeError: boom" in proc.stderr
