"""Build hook: compile csrc/ into the cffi extension ggufref._kernels at install time."""

from setuptools import setup

setup(cffi_modules=["pysrc/ggufref/_kernels_build.py:ffibuilder"])
