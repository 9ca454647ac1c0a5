"""Small, valid, installable wheels made on the spot (a module, METADATA, WHEEL, RECORD)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def make_wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any", payload: str = "",
               binaries: dict[str, bytes] | None = None) -> Path:
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files: dict[str, str | bytes] = {
        f"{dist}.py": f'VERSION = "{version}"\n{payload}',
        **{f"{dist}_libs/{n}": b for n, b in (binaries or {}).items()},
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test wheel\n"
                            f"Requires-Python: >=3.8\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: ciwheels-tests\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    record = []
    for path, text in files.items():
        data = text if isinstance(text, bytes) else text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path, text in files.items():
            info_ = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            z.writestr(info_, text)
    return out


DOT = "double dot(const double *x, const double *y, int n)" \
      "{double s = 0; for (int i = 0; i < n; i++) s += x[i] * y[i]; return s;}\n"


def compile_so(tmp: Path, cc: str, *flags: str, source: str = DOT, opt: str = "-O3") -> bytes:
    """A real shared object made by a real compiler (gcc, or Debian's riscv64 cross gcc)."""
    import shutil
    import subprocess

    exe = shutil.which(cc)
    assert exe, f"{cc} is a test dependency (.ci/system-deps installs it)"
    key = abs(hash((cc, flags, source, opt)))
    src = tmp / f"src-{key}.c"
    src.write_text(source)
    out = tmp / f"lib-{key}.so"
    subprocess.run([exe, opt, "-shared", "-fPIC", *flags, str(src), "-o", str(out)], check=True)
    return out.read_bytes()
