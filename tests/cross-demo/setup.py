"""A C extension whose build imports the extension it has just built, to write a module from it
(as projects do that generate tables or stubs by running their own extension). In cross mode the
native interpreter that runs the build cannot load an extension built for the target, so the
build fails and ciwheels falls back to the emulated build, where it works (tests/test_cross.py)."""

import importlib
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildAndImport(build_ext):
    def run(self):
        super().run()
        sys.path.insert(0, self.build_lib)
        ext = importlib.import_module("crossdemo._ext")
        with open(f"{self.build_lib}/crossdemo/_table.py", "w") as f:
            f.write(f"ANSWER = {ext.answer()}\n")


setup(packages=["crossdemo"], ext_modules=[Extension("crossdemo._ext", ["crossdemo/_ext.c"])],
      cmdclass={"build_ext": BuildAndImport})
