"""Run in the build container (cibuildwheel's test command): the extensions work."""

import sysroot_demo

assert sysroot_demo.parse("0x10 7") == (16, 7), sysroot_demo.parse("0x10 7")
assert sysroot_demo.parse("-42") == (-42, -1)
try:
    sysroot_demo.parse("x")
except ValueError:
    pass
else:
    raise AssertionError("parse('x') did not raise")
assert sysroot_demo.shout("riscv") == "RISCV!"
try:
    sysroot_demo.shout("")
except ValueError as e:
    assert "nothing to shout" in str(e)
else:
    raise AssertionError("the C++ exception did not become a ValueError")
assert sysroot_demo.to_int("  123") == 123
try:
    sysroot_demo.to_int("abc")
except ValueError as e:
    assert "not a number: abc" in str(e)
else:
    raise AssertionError("std::stoi did not throw")
print("sysroot_demo: ok")
