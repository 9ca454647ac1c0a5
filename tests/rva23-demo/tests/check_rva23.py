"""Run in the build container under QEMU (cibuildwheel's test command): each function gives
its answer. Without the extension in QEMU_CPU, the first call of its instruction kills the
process with SIGILL instead."""

import rva23_demo as r

assert r.half_plus_two(3.0) == 3.5, r.half_plus_two(3.0)  # Zfa: fli.d
assert (r.keep_if(7, 1), r.keep_if(7, 0)) == (7, 0)  # Zicond: czero.eqz
assert r.low_byte(0x1FF) == 0xFF  # Zcb: c.zext.b
assert r.sign_byte(0x80) == -128  # Zcb: c.sext.b
assert r.times(-6, 7) == -42  # Zcb: c.mul
print("rva23_demo: ok")
