from cext_demo._core import add, dot

__all__ = ["add", "dot"]
