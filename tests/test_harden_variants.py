"""Hardening, second round (#19): wheel variants and verify. A variant wheel comes from a job
artifact (hostile in builder mode): whatever its variant.json holds, whatever sits under a
variant wheel's name, gather and verify answer with one paragraph and exit 2, read a bounded
amount, and never block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, run_ciwheels
from wheelfactory import make_wheel

from ciwheels.catalog import load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.dist import variants

CAT = load_catalog()
TAG = "cp313-cp313-manylinux_2_28_x86_64"
ACCEPTED = {"$schema": variants.SCHEMA, "default-priorities": {"namespace": ["x86_64"]},
            "providers": {"x86_64": {"requires": ["x86-64-variant-provider"]}},
            "variants": {"x86_64_v3": {"x86_64": {"level": ["v3"]}}}}


def _variant_wheel(folder: Path, variant_json: bytes, *, compress: bool = False) -> Path:
    """A variant wheel (label x86_64_v3) whose dist-info holds `variant_json` as its variant.json."""
    plain = make_wheel(folder / "plain", "demo", "1.0", tag=TAG)
    out = folder / f"demo-1.0-{TAG}-x86_64_v3.whl"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("demo-1.0.dist-info/variant.json", variant_json,
                     compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
    plain.unlink()
    return out


@pytest.mark.parametrize("doc", [
    [], {**ACCEPTED, "variants": []}, {**ACCEPTED, "providers": []}, {**ACCEPTED, "variants": {"x86_64_v3": []}},
    {**ACCEPTED, "variants": {"x86_64_v3": {"x86_64": {"level": "v3"}}}}, {**ACCEPTED, "default-priorities": []},
    {**ACCEPTED, "default-priorities": {"namespace": "x86_64"}}, {**ACCEPTED, "providers": {"x86_64": []}},
    {**ACCEPTED, "variants": {"x86_64_v3": {"x86_64": []}}}])
def test_a_variant_json_of_the_wrong_shape_is_one_error_in_gather_and_verify(tmp_path, doc):
    wheel = _variant_wheel(tmp_path / "art", json.dumps(doc).encode())
    proc = run_ciwheels("verify", str(wheel))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "variant.json" in proc.stderr
    proc = run_ciwheels("gather", str(tmp_path / "art"), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_a_huge_variant_json_is_refused_without_reading_it(tmp_path):
    """64 MiB of variant.json compressed to a few KiB (700 MB was read whole before, 1.4 GB)."""
    wheel = _variant_wheel(tmp_path, b"{" + b" " * (64 << 20) + b"}", compress=True)
    assert wheel.stat().st_size < 1 << 20
    with pytest.raises(CiwheelsError, match="larger than 1024 KiB"):
        variants.read_variant_json(wheel)
    proc = run_ciwheels("verify", str(wheel))
    assert proc.returncode == 2 and "larger than" in proc.stderr and "Traceback" not in proc.stderr


def test_a_file_named_like_a_variant_wheel_that_is_not_a_zip_or_is_a_fifo(tmp_path):
    fake = tmp_path / f"demo-1.0-{TAG}-x86_64_v3.whl"
    fake.write_bytes(b"not a zip at all")
    proc = run_ciwheels("verify", str(fake))
    assert proc.returncode == 2 and "cannot open the wheel" in proc.stderr and "Traceback" not in proc.stderr
    fake.unlink()
    os.mkfifo(fake)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "verify", str(fake)], capture_output=True, text=True,
                          timeout=60, env=env)  # a FIFO used to block verify forever
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
    fake.unlink()
    fake.symlink_to("/proc/self/environ")
    proc = run_ciwheels("verify", str(fake))
    assert proc.returncode == 2 and "link" in proc.stderr and "Traceback" not in proc.stderr


_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
_json = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=10), inner, max_size=3)),
                     max_leaves=20)
_parts = st.fixed_dictionaries({}, optional={
    "$schema": st.one_of(st.just(variants.SCHEMA), _json), "default-priorities": st.one_of(
        st.just({"namespace": ["x86_64"]}), _json), "providers": st.one_of(st.just(ACCEPTED["providers"]), _json),
    "variants": st.one_of(st.just(ACCEPTED["variants"]), st.dictionaries(st.sampled_from(["x86_64_v3", "Bad!"]),
                                                                         _json, max_size=2), _json)})


@given(st.one_of(_json, _parts))
@settings(max_examples=80, deadline=None)
def test_the_variant_json_reader_returns_the_shape_or_one_error(data):
    try:
        clean = variants.loads_variant_json(json.dumps(data).encode(), "w.whl: variant.json")
    except CiwheelsError as e:
        assert "w.whl: variant.json" in str(e)
        return
    assert isinstance(clean["variants"], dict) and isinstance(clean["providers"], dict)
    for props in clean["variants"].values():
        for features in props.values():
            assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in features.values())
    variants.level_of(clean, "x86_64_v3", "x86_64", CAT)  # what verify does with it: no crash
    variants.merge([("a", clean)])
