from setuptools import Extension, setup

setup(ext_modules=[Extension("rva23_demo._rva23", ["src/rva23_demo/_rva23.c"])])
