"""Functions whose machine code, compiled for rva23u64 by GCC 14, uses Zfa (fli.d), Zicond
(czero.eqz) and Zcb (c.zext.b, c.sext.b, c.mul): see _rva23.c."""

from rva23_demo._rva23 import half_plus_two, keep_if, low_byte, sign_byte, times

__all__ = ["half_plus_two", "keep_if", "low_byte", "sign_byte", "times"]
