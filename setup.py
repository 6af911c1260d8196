"""Copies runtime_c/, templates/ and boards/ into the wheel as mcuqp/_data/ (see mcuqp/resources.py).

They stay top-level folders in the repository; an editable install reads them in place.
All other metadata is in pyproject.toml.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RESOURCE_DIRS = ("runtime_c", "templates", "boards")
BUILD_ARTEFACTS = shutil.ignore_patterns("*.o", "*.so", "*.a", "*.elf", "__pycache__")


class BuildPyWithResources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = Path(__file__).resolve().parent
        for name in RESOURCE_DIRS:
            dst = Path(self.build_lib) / "mcuqp" / "_data" / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(here / name, dst, ignore=BUILD_ARTEFACTS)


setup(cmdclass={"build_py": BuildPyWithResources})
