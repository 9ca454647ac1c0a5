import os

from setuptools import Extension, setup

extensions = [
    Extension("sysroot_demo._cdemo", ["src/sysroot_demo/_cdemo.c"]),
    Extension("sysroot_demo._cxxdemo", ["src/sysroot_demo/_cxxdemo.cpp"], language="c++"),
]
if os.environ.get("SYSROOT_DEMO_LZMA") == "1":
    # a library of the image's own distribution (liblzma-dev), built for its newer glibc: auditwheel
    # refuses the wheel at the sysroot's policy (tests/test_sysroot.py)
    extensions.append(Extension("sysroot_demo._lzmademo", ["src/sysroot_demo/_lzmademo.c"], libraries=["lzma"]))
setup(ext_modules=extensions)
