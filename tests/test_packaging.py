"""The project's metadata builds cleanly: `pip install .` prints no setuptools warning."""

from __future__ import annotations

import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_pyproject_applies_without_warnings() -> None:
    # A licence given as a TOML table made every `pip install .` print a deprecation
    # warning three times; the SPDX string form is the current one.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), PYPROJECT)
    assert [str(warning.message) for warning in caught] == []
    assert dist.metadata.license_expression == "Apache-2.0"
