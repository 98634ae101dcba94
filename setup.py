"""Only the compiled part of VTP lives here; everything else is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["vtp/sfu/fastpath/build.py:ffibuilder"])
