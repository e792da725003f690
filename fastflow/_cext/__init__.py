"""Compiled Cython hot paths (sources in ``cext/``); built by ``setup.py``."""
