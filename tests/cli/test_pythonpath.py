"""`--python-path` / FASTFLOW_PYTHONPATH / virtualenv directories on sys.path (in process).

The standalone executable runs the same code; tests/test_binary.py checks it end to end.
"""

import os
import sys

import pytest

from fastflow._pythonpath import extend_sys_path

VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(autouse=True)
def _own_sys_path(monkeypatch):
    monkeypatch.setattr(sys, "path", ["/bundle"])


def test_dirs_then_environment_go_to_the_end_as_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {"FASTFLOW_PYTHONPATH": f"env1{os.pathsep}{os.pathsep}/abs/env2"}
    added = extend_sys_path(["cli", "/bundle"], environ, frozen=False)
    expected = [str(tmp_path / "cli"), str(tmp_path / "env1"), "/abs/env2"]
    assert added == expected
    assert sys.path == ["/bundle", *expected]


def test_nothing_to_add(tmp_path):
    assert extend_sys_path([], {}, frozen=True) == []
    assert sys.path == ["/bundle"]


def _virtualenv(root, version=VERSION):
    site_packages = root / "venv" / "lib" / version / "site-packages"
    site_packages.mkdir(parents=True)
    (site_packages / "extra.pth").write_text(f"{root / 'src'}\n")
    (root / "src").mkdir()
    return root / "venv", site_packages


def test_frozen_adds_the_active_virtualenvs_site_packages_and_its_pth_files(tmp_path):
    venv, site_packages = _virtualenv(tmp_path)
    added = extend_sys_path([], {"VIRTUAL_ENV": str(venv)}, frozen=True)
    assert added == [str(site_packages)]
    assert sys.path == ["/bundle", str(site_packages), str(tmp_path / "src")]


def test_installed_command_leaves_virtualenvs_to_python(tmp_path):
    venv, _ = _virtualenv(tmp_path)
    assert extend_sys_path([], {"VIRTUAL_ENV": str(venv)}, frozen=False) == []
    assert sys.path == ["/bundle"]


def test_virtualenv_of_another_python_is_named_in_a_warning(tmp_path, capsys):
    venv, _ = _virtualenv(tmp_path, version="python2.7")
    assert extend_sys_path([], {"VIRTUAL_ENV": str(venv)}, frozen=True) == []
    assert sys.path == ["/bundle"]
    assert capsys.readouterr().err == (
        f"fastflow: warning: the active virtualenv {venv} has no lib/{VERSION}/site-packages "
        f"(this fastflow runs {VERSION}); its packages are not importable\n"
    )
