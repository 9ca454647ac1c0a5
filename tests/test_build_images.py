"""`render: {build-images: ...}` (issue #11): the pipelines build the image of the matrix's recipe,
tagged by its digest, only when the registry lacks it; the glibc cells of the arch build in it.

The digests expected here are computed with ciwheels.images.recipe.Recipe from the inputs the test
names (never copied from an output), so a change of the recipe files keeps these tests true
while a change of what goes into the recipe fails them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import run_ciwheels, with_registries
from test_real_projects import actionlint, zizmor_pedantic
from test_render import GITHUB, GITLAB, check_jsonschema, tool

from ciwheels.images.recipe import Recipe

MATRIX = """\
python: [cp311, cp313, cp314, cp314t]
libc: [glibc, musl]
arch: [x86_64, riscv64]
exclude:
  - {python: cp314t, arch: riscv64}
include:
  - {python: cp312, libc: musl, arch: riscv64}
render:
  default-branch: main
  ciwheels: "ciwheels==0.1.0"
  build-images: [riscv64]
"""
PYTHONS = ("cp311", "cp313", "cp314")  # the glibc riscv64 cells' (cp312 is a musl cell, cp314t excluded)


def project(tmp_path: Path, matrix: str = MATRIX) -> Path:
    (tmp_path / "matrix").mkdir(parents=True, exist_ok=True)
    (tmp_path / "matrix" / "wheels.yaml").write_text(with_registries(matrix))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n')
    return tmp_path


def render(p: Path, *args: str, env: dict | None = None):
    return run_ciwheels("render", "--project", str(p), *args, env=env, cwd=p)


def load(path: Path):
    return YAML(typ="safe").load(path.read_text())


def cells(p: Path, env: dict | None = None) -> dict[str, dict]:
    out = run_ciwheels("matrix", "--project", str(p), "--json", env=env, check=True).stdout
    return {c["id"]: c for c in json.loads(out)}


def digest(pythons=PYTHONS, base="debian:trixie", native=True, arch="riscv64", sysroot="default") -> str:
    return Recipe(arch, base, tuple(pythons), native, sysroot=sysroot).digest()


# -- the cells ------------------------------------------------------------------------------

def test_glibc_cells_of_the_arch_build_in_the_digest_reference(tmp_path):
    p = project(tmp_path)
    got = cells(p)
    ref = f"localhost/ciwheels-manylinux-riscv64:{digest()}"
    glibc_riscv = {i: c for i, c in got.items() if "manylinux_riscv64" in i}
    assert sorted(glibc_riscv) == [f"{py}-manylinux_riscv64-rv64gc" for py in PYTHONS]
    for c in glibc_riscv.values():
        assert c["image_ref"] == c["image"] == ref and c["custom_image"]
        # the glibc of the recipe's default sysroot (Debian bullseye's, issue #22), not trixie's 2.41
        assert c["policy"] == "manylinux_2_31"
        assert c["cibw"]["CIBW_MANYLINUX_RISCV64_IMAGE"] == ref
    # musllinux keeps pypa's images, and so does every other arch
    assert got["cp312-musllinux_riscv64-rv64gc"]["image"] == "musllinux_1_2"
    assert got["cp311-manylinux_x86_64-x86-64"]["image"] == "manylinux_2_28"
    explained = run_ciwheels("explain", "cp313-manylinux_riscv64-rv64gc", "--project", str(p), cwd=p,
                             check=True).stdout
    assert f"{ref} (custom)" in explained and "matrix/wheels.yaml:11 (render.build-images[0])" in explained
    assert "glibc 2.31 of the bullseye sysroot" in explained


def test_the_registry_comes_from_the_environment_lowercased(tmp_path):
    """CI sets CIWHEELS_IMAGE_REGISTRY (GitHub's owner/repo may have capitals; image names may not)."""
    import os

    p = project(tmp_path)
    env = {**os.environ, "CIWHEELS_IMAGE_REGISTRY": "ghcr.io/Some-Owner/Repo/"}
    got = cells(p, env)
    assert got["cp311-manylinux_riscv64-rv64gc"]["image_ref"] == \
        f"ghcr.io/some-owner/repo/ciwheels-manylinux-riscv64:{digest()}"
    # the rendered files do not depend on it: the pipelines set it themselves
    render(p, env=env)
    assert render(p, "--check").returncode == 0


# -- the rendered jobs ----------------------------------------------------------------------

def test_github_image_job_builds_by_digest_unless_the_registry_has_it(tmp_path):
    p = project(tmp_path)
    assert render(p).returncode == 0
    gh = load(p / GITHUB)
    assert gh["env"]["CIWHEELS_IMAGE_REGISTRY"] == "ghcr.io/${{ github.repository }}"
    job = gh["jobs"]["image-riscv64"]
    assert "if" not in job  # pushes, pull requests, tags, schedules and manual runs alike
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    assert any(s.get("with", {}).get("platforms") == "linux/riscv64" for s in job["steps"])
    step = job["steps"][-1]
    assert step["env"]["IMAGE_NAME"] == f"ciwheels-manylinux-riscv64:{digest()}"
    assert step["env"]["IMAGE_BASE"] == "debian:trixie" and step["env"]["IMAGE_PYTHONS"] == "cp311 cp313 cp314"
    run = step["run"]
    # the registry is asked first (logged in), the build and push come after the exits
    inspect, build = run.index('docker manifest inspect "$ref"'), run.index('ciwheels image build "$IMAGE_ARCH"')
    assert run.index("docker login ghcr.io") < inspect < run.index('[ "$FROM_FORK" = true ]; then') < build
    assert '--engine docker --base "$IMAGE_BASE" --sysroot "$IMAGE_SYSROOT" "$@" --tag "$ref"' in run
    assert "--no-native-compilers" not in run and step["env"]["IMAGE_SYSROOT"] == "bullseye"
    assert run.rstrip().endswith('docker push "$ref"')
    assert "github.event.pull_request.head.repo.full_name != github.repository" in step["env"]["FROM_FORK"]
    # only the jobs in that image wait for it, and log in to pull it
    assert gh["jobs"]["build-riscv64-image"]["needs"] == ["image-riscv64"]
    image_jobs = [e["job"] for e in gh["jobs"]["build-riscv64-image"]["strategy"]["matrix"]["include"]]
    assert image_jobs == [f"manylinux_2_31_riscv64-rv64gc-{py}" for py in PYTHONS]
    assert gh["jobs"]["build-riscv64-image"]["permissions"] == {"contents": "read", "packages": "read"}
    assert any(s.get("name") == "Log in to the image registry" for s in gh["jobs"]["build-riscv64-image"]["steps"])
    assert "needs" not in gh["jobs"]["build"]
    assert not any("manylinux_riscv64" in e["job"] or "manylinux_2_31" in e["job"]
                   for e in gh["jobs"]["build"]["strategy"]["matrix"]["include"])
    # scheduled runs: the planned builds wait for it too
    assert gh["jobs"]["build-planned-0"]["needs"] == ["plan", "image-riscv64"]
    assert "build-riscv64-image" in gh["jobs"]["gather"]["needs"]


def test_the_image_job_builds_the_tag_it_renders(tmp_path):
    """What the rendered job runs (`ciwheels image build ARCH --base B --python ...`) tags the
    image with the very digest the build jobs were rendered to pull."""
    p = project(tmp_path)
    assert render(p).returncode == 0
    step = load(p / GITHUB)["jobs"]["image-riscv64"]["steps"][-1]["env"]
    args = [x for py in step["IMAGE_PYTHONS"].split() for x in ("--python", py)]
    tag = run_ciwheels("image", "build", step["IMAGE_ARCH"], "--base", step["IMAGE_BASE"], "--sysroot",
                       step["IMAGE_SYSROOT"], *args, "--dry-run", check=True).stdout.strip()
    assert tag == f"localhost/{step['IMAGE_NAME']}"


def test_gitlab_image_job_builds_by_digest_unless_the_registry_has_it(tmp_path):
    p = project(tmp_path)
    proc = render(p)
    assert proc.returncode == 0
    gl = load(p / GITLAB)
    # the image job's 360 minutes are above gitlab.com's 180: said when rendering, as for build jobs
    assert gl["ciwheels-image-riscv64"]["timeout"] == "360 minutes"
    assert ("the GitLab image job(s) ciwheels-image-riscv64 have a timeout of 360 minutes" in proc.stderr
            and "above gitlab.com's default limit of 180 minutes" in proc.stderr)
    (p / "matrix" / "wheels.yaml").write_text(with_registries(MATRIX.replace("render:\n", "render:\n  gitlab: false\n")))
    assert "GitLab image job" not in render(p).stderr
    assert gl["variables"]["CIWHEELS_IMAGE_REGISTRY"] == "$CI_REGISTRY_IMAGE"
    job = gl["ciwheels-image-riscv64"]
    assert job["stage"] == ".pre" and "rules" not in job and "only" not in job
    assert job["variables"]["CIWHEELS_IMAGE_REF"] == f"$CI_REGISTRY_IMAGE/ciwheels-manylinux-riscv64:{digest()}"
    assert job["variables"]["CIWHEELS_IMAGE_PYTHONS"] == "cp311 cp313 cp314"
    assert job["variables"]["CIWHEELS_IMAGE_SYSROOT"] == "bullseye"
    assert '--sysroot "$CIWHEELS_IMAGE_SYSROOT"' in "\n".join(job["script"])
    assert job["variables"]["CIWHEELS_QEMU"] == "riscv64"
    script = "\n".join(job["script"])
    assert script.index("docker login") < script.index('docker manifest inspect "$CIWHEELS_IMAGE_REF"') \
        < script.index("ciwheels image build") < script.index('docker push "$CIWHEELS_IMAGE_REF"')
    chunk = gl["ciwheels-build-riscv64-image"]
    assert chunk["needs"] == ["ciwheels-image-riscv64"] and chunk["variables"] == {"CIWHEELS_BUILT_IMAGE": "riscv64"}
    assert [e["CIWHEELS_JOB"] for e in chunk["parallel"]["matrix"]] == \
        [f"manylinux_2_31_riscv64-rv64gc-{py}" for py in PYTHONS]
    assert gl["ciwheels-build"]["needs"] == []  # the other builds do not wait for the image
    assert any("docker login" in line and "CIWHEELS_BUILT_IMAGE" in line for line in gl[".ciwheels-build"]["script"])
    assert gl["ciwheels-planned"]["needs"] == ["ciwheels-plan", "ciwheels-image-riscv64"]


def test_gitlab_child_pipeline_pulls_the_built_image(tmp_path):
    p = project(tmp_path)
    child = tmp_path / "child.yml"
    run_ciwheels("plan", "--project", str(p), "--gitlab-child", str(child), check=True)
    gl = load(child)
    assert gl["variables"]["CIWHEELS_IMAGE_REGISTRY"] == "$CI_REGISTRY_IMAGE"
    assert gl["build manylinux_2_31_riscv64-rv64gc-cp313"]["variables"]["CIWHEELS_BUILT_IMAGE"] == "riscv64"
    assert "CIWHEELS_BUILT_IMAGE" not in gl["build manylinux_2_28_x86_64-x86-64"]["variables"]
    assert any("docker login" in line for line in gl[".ciwheels-build"]["script"])


def test_without_build_images_nothing_of_it_is_rendered(tmp_path):
    p = project(tmp_path, MATRIX.replace("  build-images: [riscv64]\n", ""))
    assert render(p).returncode == 0
    for path in (GITHUB, GITLAB):
        text = (p / path).read_text()
        assert "CIWHEELS_IMAGE_REGISTRY" not in text and "image-riscv64" not in text and "needs: []" not in text


# -- the digest: what changes it and what does not --------------------------------------------

def test_digest_follows_the_recipe_inputs_and_render_check_notices(tmp_path):
    p = project(tmp_path)
    assert render(p).returncode == 0
    first = (p / GITHUB).read_bytes(), (p / GITLAB).read_bytes()
    assert render(p).returncode == 0 and ((p / GITHUB).read_bytes(), (p / GITLAB).read_bytes()) == first
    assert render(p, "--check").returncode == 0

    def name_after(matrix: str) -> str:
        project(tmp_path, matrix)
        check = render(p, "--check")
        assert render(p).returncode == 0
        name = load(p / GITHUB)["jobs"]["image-riscv64"]["steps"][-1]["env"]["IMAGE_NAME"]
        assert load(p / GITLAB)["ciwheels-image-riscv64"]["variables"]["CIWHEELS_IMAGE_REF"].endswith(name)
        return name, check.returncode

    # nothing of the recipe changes: the same tag (the pushed image is reused)
    same, rc = name_after(MATRIX.replace("render:", "test-command: python -c 1\nrender:"))
    assert same == f"ciwheels-manylinux-riscv64:{digest()}" and rc == 0
    # a Python more on riscv64 glibc: a new tag, and the committed files are stale
    added, rc = name_after(MATRIX.replace("[cp311, cp313,", "[cp311, cp312, cp313,"))
    assert added == f"ciwheels-manylinux-riscv64:{digest(('cp311', 'cp312', 'cp313', 'cp314'))}" and rc == 1
    assert added != same
    # a musl cell more changes nothing: musllinux keeps pypa's image
    musl, _ = name_after(MATRIX.replace("{python: cp312, libc: musl, arch: riscv64}",
                                        "{python: cp312, libc: musl, arch: riscv64}\n"
                                        "  - {python: cp310, libc: musl, arch: riscv64}"))
    assert musl == same
    # another base, or no native compilers: new tags
    based, rc = name_after(MATRIX.replace("build-images: [riscv64]", "build-images: {riscv64: {base: 'ubuntu:22.04'}}"))
    assert based == f"ciwheels-manylinux-riscv64:{digest(base='ubuntu:22.04')}" and based != same and rc == 1
    plain, _ = name_after(MATRIX.replace("build-images: [riscv64]",
                                         "build-images: {riscv64: {native-compilers: false}}"))
    assert plain == f"ciwheels-manylinux-riscv64:{digest(native=False)}" and plain not in (same, based)
    assert "--no-native-compilers --tag" in load(p / GITHUB)["jobs"]["image-riscv64"]["steps"][-1]["run"]
    # the mapping form with the defaults spelled out is the list form
    spelled, _ = name_after(MATRIX.replace("build-images: [riscv64]", "build-images: {riscv64: {base: "
                                           "'debian:trixie', native-compilers: true}}"))
    assert spelled == same


def test_the_base_decides_the_policy_of_the_cells(tmp_path):
    """Without a sysroot (x86_64's recipe has none) the base's glibc decides the policy; riscv64's
    recipe compiles against the bullseye sysroot, whose glibc 2.31 decides it whatever the base."""
    p = project(tmp_path, MATRIX.replace("build-images: [riscv64]", "build-images: {riscv64: {base: 'ubuntu:22.04'}, "
                                         "x86_64: {base: 'ubuntu:22.04'}}"))
    got = cells(p)
    assert got["cp313-manylinux_x86_64-x86-64"]["policy"] == "manylinux_2_35"
    assert got["cp313-manylinux_riscv64-rv64gc"]["policy"] == "manylinux_2_31"
    assert render(p).returncode == 0
    assert "manylinux_2_31_riscv64-rv64gc-cp313" in (p / GITHUB).read_text()
    p = project(tmp_path, MATRIX.replace("build-images: [riscv64]",
                                         "build-images:\n    riscv64: {base: 'registry.example/rv:1'}"))
    assert cells(p)["cp313-manylinux_riscv64-rv64gc"]["policy"] == "manylinux_2_31"
    # a base ciwheels does not know needs its policy when no sysroot decides it
    p = project(tmp_path, MATRIX.replace("build-images: [riscv64]",
                                         "build-images:\n    x86_64: {base: 'registry.example/rv:1'}"))
    proc = render(p)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: matrix/wheels.yaml:12") and "'registry.example/rv:1'" in proc.stderr
    assert "policy: manylinux_X_Y" in proc.stderr
    p = project(tmp_path, MATRIX.replace("build-images: [riscv64]", "build-images:\n    riscv64: "
                                         "{base: 'registry.example/rv:1', policy: manylinux_2_39}"))
    assert cells(p)["cp313-manylinux_riscv64-rv64gc"]["policy"] == "manylinux_2_39"


def test_the_matrix_chooses_the_images_sysroot(tmp_path):
    """`render: {build-images: {riscv64: {sysroot: NAME}}}` (issue #22): the recipe's sysroot, so
    its digest and the image job's `--sysroot`; the cells' policy is that sysroot's glibc, and
    `matrix --json` and `explain` name it with its matrix line. `none`: the base's glibc."""
    p = project(tmp_path)
    default = cells(p)["cp313-manylinux_riscv64-rv64gc"]
    assert default["sysroot"] == "bullseye" and default["policy"] == "manylinux_2_31"
    explained = run_ciwheels("explain", "cp313-manylinux_riscv64-rv64gc", "--project", str(p), cwd=p,
                             check=True).stdout
    assert "images.toml arches.riscv64.sysroot" in explained
    for sysroot, policy in (("bookworm", "manylinux_2_36"), ("none", "manylinux_2_41"), ("bullseye", "manylinux_2_31")):
        p = project(tmp_path, MATRIX.replace("build-images: [riscv64]",
                                             f"build-images:\n    riscv64: {{sysroot: {sysroot}}}"))
        cell = cells(p)["cp313-manylinux_riscv64-rv64gc"]
        assert (cell["sysroot"], cell["policy"]) == (sysroot, policy)
        assert cell["image_ref"] == f"localhost/ciwheels-manylinux-riscv64:{digest(sysroot=sysroot)}"
        assert render(p).returncode == 0
        step = load(p / GITHUB)["jobs"]["image-riscv64"]["steps"][-1]["env"]
        assert step["IMAGE_SYSROOT"] == sysroot and step["IMAGE_NAME"] == cell["image_ref"].split("/", 1)[1]
        assert load(p / GITLAB)["ciwheels-image-riscv64"]["variables"]["CIWHEELS_IMAGE_SYSROOT"] == sysroot
        explained = json.loads(run_ciwheels("explain", "cp313-manylinux_riscv64-rv64gc", "--json", "--project", str(p),
                                            cwd=p, check=True).stdout)
        rows = {s["setting"]: s for s in explained["settings"]}
        assert rows["sysroot"]["value"] == sysroot
        assert rows["sysroot"]["origin"] == "matrix/wheels.yaml:12 (render.build-images.riscv64.sysroot)"
        if sysroot != "none":
            assert rows["policy"]["origin"] == (f"matrix/wheels.yaml:12 (render.build-images.riscv64.sysroot: glibc "
                                                f"{'2.36' if sysroot == 'bookworm' else '2.31'} of the {sysroot} sysroot)")
    # the default spelled out is the same recipe; cells in pypa's images have no sysroot
    assert digest(sysroot="bullseye") == digest()
    assert "sysroot" not in cells(p)["cp313-manylinux_x86_64-x86-64"]


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("matrix, where, words", [
    (MATRIX + "images:\n  riscv64-glibc: registry.example/rv:1\n", "matrix/wheels.yaml:13",
     ["'registry.example/rv:1'", "riscv64-glibc", "matrix/wheels.yaml:11 (render.build-images)", "remove one"]),
    (MATRIX.replace("build-images: [riscv64]", "build-images: {riscv: {}}"), "matrix/wheels.yaml:11",
     ["unknown key 'riscv' in render.build-images", "Did you mean 'riscv64'?"]),
    (MATRIX.replace("build-images: [riscv64]", "build-images: [riscv]"), "matrix/wheels.yaml:11",
     ["Did you mean 'riscv64'?"]),
    (MATRIX.replace("build-images: [riscv64]", "build-images: {riscv64: {base: 'a b'}}"), "matrix/wheels.yaml:11",
     ["'a b' is not a valid value"]),
    (MATRIX.replace("build-images: [riscv64]", "build-images: {riscv64: {policy: musllinux_1_2}}"),
     "matrix/wheels.yaml:11", ["unknown policy 'musllinux_1_2'"]),
    (MATRIX.replace("build-images: [riscv64]", "build-images: [x86_64]").replace("cp314t]", "cp314t, pp310]"),
     "matrix/wheels.yaml:11", ["carries CPython only", "pp310"]),
    (MATRIX.replace("build-images: [riscv64]", "build-images: {riscv64: {sysroot: buster}}"),
     "matrix/wheels.yaml:11", ["unknown sysroot 'buster'", "bullseye, bookworm, none"]),
    (MATRIX.replace("build-images: [riscv64]", "build-images:\n    x86_64: {sysroot: bullseye}"),
     "matrix/wheels.yaml:12", ["no 'bullseye' sysroot for x86_64", "none"]),
], ids=["images-too", "unknown-arch-key", "unknown-arch-item", "bad-base", "musl-policy", "pypy-on-the-arch",
        "unknown-sysroot", "sysroot-not-for-the-arch"])
def test_bad_build_images_are_one_paragraph_with_file_and_line(tmp_path, matrix, where, words):
    p = project(tmp_path, matrix)
    for args in (("render",), ("matrix",)):
        proc = run_ciwheels(*args, "--project", str(p), cwd=p)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith(f"error: {where}"), proc.stderr
        assert "Traceback" not in proc.stderr and all(w in proc.stderr for w in words), proc.stderr


def test_an_arch_without_glibc_cells_gets_no_image_job(tmp_path):
    p = project(tmp_path, MATRIX.replace("libc: [glibc, musl]", "libc: [musl]").replace(
        "include:\n  - {python: cp312, libc: musl, arch: riscv64}\n", ""))
    proc = render(p)
    assert proc.returncode == 0 and "no glibc cell builds on riscv64" in proc.stderr
    assert "image-riscv64" not in (p / GITHUB).read_text()


# -- the rendered files, checked by independent tools ----------------------------------------

@pytest.mark.slow  # check-jsonschema, actionlint, zizmor and gitlab-ci-local: external tools
def test_rendered_image_pipelines_pass_the_validators(tmp_path):
    p = project(tmp_path, MATRIX.replace("build-images: [riscv64]",
                                         "build-images: {riscv64: {base: 'ubuntu:22.04', native-compilers: false}}"))
    assert render(p).returncode == 0
    check_jsonschema(p / GITHUB, p / GITLAB)
    actionlint(p / GITHUB)
    zizmor_pedantic(p / GITHUB)
    child = tmp_path / "child.yml"
    run_ciwheels("plan", "--project", str(p), "--gitlab-child", str(child), check=True)
    check_jsonschema(None, child)
    # gitlab-ci-local reads the pipeline as GitLab would: the image job, and the needs of the builds
    (p / ".gitlab-ci.yml").write_text(f"include:\n  - local: {GITLAB}\n")
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(args, cwd=p, check=True)
    listed = json.loads(subprocess.run([tool("gitlab-ci-local"), "--list-json"], cwd=p, capture_output=True,
                                       text=True, check=True).stdout)
    jobs = {j["name"]: j for j in listed}
    assert jobs["ciwheels-image-riscv64"]["stage"] == ".pre"
    built = [j for n, j in jobs.items() if n.startswith("ciwheels-build-riscv64-image")]
    assert len(built) == 3 and all([n["job"] for n in j["needs"]] == ["ciwheels-image-riscv64"] for j in built), built
    assert all(j["needs"] == [] for n, j in jobs.items() if n.startswith("ciwheels-build: ["))
    preview = subprocess.run([tool("gitlab-ci-local"), "--preview"], cwd=p, capture_output=True, text=True,
                             check=True).stdout
    merged = YAML(typ="safe").load(preview)
    image = merged["ciwheels-image-riscv64"]
    assert image["variables"]["CIWHEELS_IMAGE_REF"].endswith(f":{digest(base='ubuntu:22.04', native=False)}")
    assert "--no-native-compilers" in image["script"][-1]
    assert merged["ciwheels-build-riscv64-image"]["variables"]["CIWHEELS_BUILT_IMAGE"] == "riscv64"
    assert merged["ciwheels-build-riscv64-image"]["variables"]["DOCKER_HOST"] == "tcp://docker:2375"  # merged
