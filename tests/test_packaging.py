"""An installed wheel carries the catalog and the templates: `pip install ciwheels` works away
from this repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

from conftest import EXAMPLE, REPO


def test_wheel_carries_data_and_runs_outside_the_repo(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("ciwheels-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("ciwheels/_data/catalog/pythons.toml", "ciwheels/_data/catalog/isa.toml",
                   "ciwheels/_data/catalog/arches.toml", "ciwheels/_data/catalog/policies.toml",
                   "ciwheels/_data/catalog/defaults.toml"):
        assert needed in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--force-reinstall", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    project = tmp_path / "project"
    (project / "matrix").mkdir(parents=True)
    (project / "matrix" / "wheels.yaml").write_text((EXAMPLE / "matrix" / "wheels.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(venv / "bin" / "ciwheels"), "matrix", "--json"], cwd=project, env=env,
                          capture_output=True, text=True, check=True)
    assert len(json.loads(proc.stdout)) == 47
    where = subprocess.run([str(py), "-c", "import ciwheels.resources as r; print(r.data_dir('catalog'))"],
                           cwd=project, env=env, capture_output=True, text=True, check=True).stdout
    assert "site-packages/ciwheels/_data/catalog" in where
