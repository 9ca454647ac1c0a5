from setuptools import Extension, setup

setup(ext_modules=[
    Extension("sysroot_demo._cdemo", ["src/sysroot_demo/_cdemo.c"]),
    Extension("sysroot_demo._cxxdemo", ["src/sysroot_demo/_cxxdemo.cpp"], language="c++"),
])
