"""publish.route: which gathered wheel goes to which registry of the matrix."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import run_ciwheels
from wheelfactory import make_wheel

from ciwheels.matrix.destination import environment_default
from ciwheels.dist.artifacts import Manifest, ManifestEntry, write_manifest
from ciwheels.core.errors import CiwheelsError
from ciwheels.project.open import project_registries
from ciwheels.dist.publish import folder_manifest, route, wheels_in

TAG = "cp312-cp312-manylinux_2_28_x86_64"
FAST = "http://127.0.0.1:9/fast"
GENERIC = "http://127.0.0.1:9/generic"


def project(tmp_path: Path, registries: str) -> Path:
    root = tmp_path / "proj"
    (root / "matrix").mkdir(parents=True, exist_ok=True)
    (root / "matrix" / "wheels.yaml").write_text(
        "python: [cp312]\narch: [x86_64]\nisa: {x86_64: [x86-64, x86-64-v3]}\nregistries:\n" + registries)
    return root


TWO = f"  fast: {{url: '{FAST}', select: {{isa: x86-64-v3}}}}\n  generic: {{url: '{GENERIC}'}}\n"


def gathered(tmp_path: Path, bound: dict[str, str | None]) -> Path:
    """A gather output: one wheel per entry of `bound` ({version: registry or None})."""
    out = tmp_path / "dist"
    entries = []
    for version, registry in bound.items():
        folder = out / registry if registry else out
        w = make_wheel(folder, "lvl", version, tag=TAG)
        entries.append(ManifestEntry(w.name, hashlib.sha256(w.read_bytes()).hexdigest(), w.stat().st_size,
                                     registry=registry))
    write_manifest(out, Manifest(tuple(entries)))
    return out


def routed(folder: Path, registries, **kw) -> dict[str | None, list[str]]:
    manifest = folder_manifest(folder)
    groups = route(wheels_in(folder, manifest), manifest, registries, folder=folder, **kw)
    return {dest.registry or None: [p.relative_to(folder).as_posix() for p, _ in items] for dest, items in groups.items()}


def test_named_registry_and_catch_all(tmp_path):
    registries = project_registries(project(tmp_path, TWO))
    assert registries["generic"].catch_all and not registries["fast"].catch_all
    dist = gathered(tmp_path, {"1.0": "fast", "2.0": "generic", "3.0": None})
    assert routed(dist, registries) == {
        "fast": [f"fast/lvl-1.0-{TAG}.whl"],
        "generic": [f"generic/lvl-2.0-{TAG}.whl", f"lvl-3.0-{TAG}.whl"],  # 3.0: named none -> catch-all
    }


def test_registry_filter(tmp_path):
    registries = project_registries(project(tmp_path, TWO))
    dist = gathered(tmp_path, {"1.0": "fast", "2.0": "generic", "3.0": None})
    assert routed(dist, registries, only="fast") == {"fast": [f"fast/lvl-1.0-{TAG}.whl"]}
    assert list(routed(dist, registries, only="generic")) == ["generic"]
    with pytest.raises(CiwheelsError, match="no registry 'fsat' in the matrix.*Did you mean 'fast'"):
        routed(dist, registries, only="fsat")
    with pytest.raises(CiwheelsError, match="the matrix names no registries"):
        routed(dist, {}, only="fast")


def test_unknown_registry_in_the_manifest_is_an_error(tmp_path):
    registries = project_registries(project(tmp_path, TWO))
    dist = gathered(tmp_path, {"1.0": "fast", "2.0": "elsewhere"})
    with pytest.raises(CiwheelsError) as e:
        routed(dist, registries)
    assert "'elsewhere'" in str(e.value) and str(dist / "manifest.json") in str(e.value)
    with pytest.raises(CiwheelsError, match="'elsewhere'"):  # a filter does not hide it
        routed(dist, registries, only="fast")
    with pytest.raises(CiwheelsError, match="'elsewhere'"):  # nor a matrix without registries
        routed(dist, {})
    # through the CLI: one paragraph, exit 2, nothing published
    proc = run_ciwheels("publish", str(dist), "--project", str(tmp_path / "proj"), "--dry-run")
    assert proc.returncode == 2 and "'elsewhere'" in proc.stderr and "Traceback" not in proc.stderr
    assert "would publish" not in proc.stdout


def test_without_catch_all_an_unnamed_wheel_is_an_error(tmp_path):
    registries = project_registries(project(tmp_path, f"  fast: {{url: '{FAST}', select: {{isa: x86-64-v3}}}}\n"))
    dist = gathered(tmp_path, {"1.0": "fast", "2.0": None})
    with pytest.raises(CiwheelsError, match="its build named no registry"):
        routed(dist, registries)


def test_only_selecting_registries_send_the_rest_to_the_environment_registry(tmp_path):
    """#18: with selecting registries only and CIWHEELS_REPOSITORY_URL (the README's setup for
    cells that name none), plan and status looked for the baseline there while publish refused it."""
    registries = project_registries(project(tmp_path, f"  fast: {{url: '{FAST}', select: {{isa: x86-64-v3}}}}\n"))
    dist = gathered(tmp_path, {"1.0": "fast", "2.0": None})
    env_default = environment_default({"CIWHEELS_REPOSITORY_URL": "https://user:pw-123456@base.example/simple-up"})
    groups = route(wheels_in(dist, folder_manifest(dist)), folder_manifest(dist), registries, folder=dist,
                   default=env_default)
    where = {dest.url: [p.name for p, _ in items] for dest, items in groups.items()}
    assert where == {FAST.rstrip("/"): [f"lvl-1.0-{TAG}.whl"], "https://base.example/simple-up": [f"lvl-2.0-{TAG}.whl"]}
    assert all("pw-123456" not in dest.url and "pw-123456" not in dest.source for dest in groups)


def test_repository_url_takes_everything_and_loose_wheels(tmp_path):
    registries = project_registries(project(tmp_path, TWO))
    dist = gathered(tmp_path, {"1.0": "fast", "2.0": None})
    assert routed(dist, {}, repository_url="http://x") == {None: [f"fast/lvl-1.0-{TAG}.whl", f"lvl-2.0-{TAG}.whl"]}
    with pytest.raises(CiwheelsError, match="exclude each other"):
        routed(dist, {}, only="fast", repository_url="http://x")
    loose = tmp_path / "loose"
    make_wheel(loose, "lvl", "4.0", tag=TAG)
    assert routed(loose, registries) == {"generic": [f"lvl-4.0-{TAG}.whl"]}
    with pytest.raises(CiwheelsError, match="no default registry is set"):
        routed(loose, {})
    env_default = environment_default({"CIWHEELS_REPOSITORY_URL": "http://y"})
    assert routed(loose, {}, default=env_default) == {None: [f"lvl-4.0-{TAG}.whl"]}
    assert project_registries(tmp_path / "nothing-here") == {}
