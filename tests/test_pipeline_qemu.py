"""Both pipelines emulate with the same, pinned QEMU (issue #21, defect 5): GitLab's build jobs
run the binfmt image, GitHub's setup-qemu-action is given it (its own default is the unpinned
tonistiigi/binfmt:latest, so the two services emulated with different QEMUs)."""

from __future__ import annotations

import re

from ruamel.yaml import YAML

from conftest import EXAMPLE


def _load(path):
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def test_github_and_gitlab_register_the_same_pinned_qemu():
    gh = _load(EXAMPLE / ".github" / "workflows" / "ciwheels.yml")
    gl = _load(EXAMPLE / ".gitlab" / "ciwheels.gitlab-ci.yml")
    gitlab_image = gl[".ciwheels-build"]["variables"]["CIWHEELS_BINFMT_IMAGE"]
    assert re.fullmatch(r"tonistiigi/binfmt:qemu-v\d+\.\d+\.\d+", gitlab_image)
    qemu_steps = [(name, step) for name, job in gh["jobs"].items() for step in job["steps"]
                  if "setup-qemu-action" in step.get("uses", "")]
    assert qemu_steps
    for name, step in qemu_steps:
        assert step["with"].get("image") == gitlab_image, f"{name}: {step}"
