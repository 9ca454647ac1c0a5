"""Test extensions for the riscv64 image's old-glibc sysroot (tests/test_sysroot.py)."""

from sysroot_demo._cdemo import parse
from sysroot_demo._cxxdemo import shout, to_int

__all__ = ["parse", "shout", "to_int"]
