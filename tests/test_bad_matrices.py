"""Every malformed matrix in tests/bad gets one clear paragraph and exit code 2.

Each file starts with `# expect: A | B` (fragments the message must contain) and
`# at: LINE[:COLUMN]` (where the message must point)."""

from __future__ import annotations

import re

import pytest

from conftest import BAD, run_ciwheels

CASES = sorted(BAD.glob("*.yaml"))


def _header(path, key):
    m = re.search(rf"^# {key}: (.*)$", path.read_text(encoding="utf-8"), re.M)
    assert m, f"{path.name} has no '# {key}:' line"
    return m.group(1).strip()


def test_corpus_is_large():
    assert len(CASES) >= 20


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_matrix(path):
    proc = run_ciwheels("matrix", "--matrix", str(path.relative_to(BAD.parent.parent)))
    err = proc.stderr
    assert proc.returncode == 2, err
    assert proc.stdout == ""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one paragraph, got:\n{err}"
    message = lines[0]
    assert message.startswith("error: tests/bad/" + path.name + ":" + _header(path, "at")), message
    for fragment in _header(path, "expect").split(" | "):
        assert fragment in message, f"{fragment!r} not in {message!r}"
