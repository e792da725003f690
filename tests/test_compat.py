"""Unmodified Bytewax flows: `bytewax` imports served by fastflow when Bytewax is absent.

Everything runs in a subprocess: the import hook changes the interpreter it is
installed in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

BYTEWAX_FLOW = """
import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("bw")
words = op.input("inp", flow, TestingSource(["a", "b", "a"]))
counts = op.count_final("count", words, lambda word: word)
op.output("out", counts, StdOutSink())
"""


def python(code: str, cwd: Path, env: Optional[Dict[str, str]] = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def with_pythonpath(path: Path) -> Dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(path)}


@pytest.fixture
def fake_bytewax(tmp_path: Path) -> Path:
    """A directory holding a package named `bytewax` that is not fastflow."""
    root = tmp_path / "site"
    (root / "bytewax").mkdir(parents=True)
    (root / "bytewax" / "__init__.py").write_text("WHO = 'the real bytewax'\n")
    return root


def test_bytewax_is_not_installed_here(tmp_path: Path) -> None:
    assert python("import importlib.util; print(importlib.util.find_spec('bytewax'))",
                  tmp_path) == "None\n"


def test_fastflow_run_runs_a_bytewax_flow_unchanged(
    tmp_path: Path, fastflow_command: List[str]
) -> None:
    (tmp_path / "flow.py").write_text(BYTEWAX_FLOW)
    proc = subprocess.run(
        [*fastflow_command, "run", "flow.py"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "('a', 2)\n('b', 1)\n"


def test_fastflow_visualize_draws_a_bytewax_flow(
    tmp_path: Path, fastflow_command: List[str]
) -> None:
    (tmp_path / "flow.py").write_text(BYTEWAX_FLOW)
    proc = subprocess.run(
        [*fastflow_command, "visualize", "flow.py"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'bw.count["count (count_final)"]' in proc.stdout.splitlines()


def test_import_gives_the_fastflow_modules_themselves(tmp_path: Path) -> None:
    out = python(
        "import fastflow.compat\n"
        "import bytewax, bytewax.operators as op\n"
        "from bytewax.dataflow import Dataflow\n"
        "from bytewax.operators import windowing\n"
        "import fastflow, fastflow.dataflow, fastflow.operators, fastflow.operators.windowing\n"
        "print(bytewax is fastflow, op is fastflow.operators,\n"
        "      Dataflow is fastflow.dataflow.Dataflow,\n"
        "      windowing is fastflow.operators.windowing)\n"
        "print(op.__name__, op.__spec__.name, Dataflow.__module__)\n",
        tmp_path,
    )
    assert out == (
        "True True True True\n"
        "fastflow.operators fastflow.operators fastflow.dataflow\n"
    )


def test_operators_helpers_is_served_too(tmp_path: Path) -> None:
    out = python(
        "import fastflow.compat\n"
        "import bytewax.operators.helpers as helpers\n"
        "from bytewax.operators.helpers import map_dict_value\n"
        "import fastflow.operators.helpers\n"
        "print(helpers is fastflow.operators.helpers, helpers.__all__)\n"
        "print(map_dict_value('a', str.upper)({'a': 'x'}))\n",
        tmp_path,
    )
    assert out == "True ['map_dict_value']\n{'a': 'X'}\n"


def test_a_module_fastflow_lacks_fails_with_a_clear_message(tmp_path: Path) -> None:
    out = python(
        "import fastflow.compat\n"
        "try:\n"
        "    import bytewax.no_such_module\n"
        "except ModuleNotFoundError as ex:\n"
        "    print(ex.name)\n"
        "    print(ex)\n",
        tmp_path,
    )
    assert out == (
        "bytewax.no_such_module\n"
        "No module named 'bytewax.no_such_module': Bytewax is not installed, so "
        "`bytewax` imports are served by fastflow, which has no 'fastflow.no_such_module'\n"
    )


def test_bytewax_kafka_serde_is_fastflows(tmp_path: Path) -> None:
    out = python(
        "import fastflow.compat\n"
        "from bytewax.connectors.kafka.serde import PlainAvroDeserializer\n"
        "print(PlainAvroDeserializer.__module__)\n",
        tmp_path,
    )
    assert out == "fastflow.connectors.kafka.serde\n"


def test_uninstall_forgets_the_alias(tmp_path: Path) -> None:
    out = python(
        "import sys, fastflow.compat\n"
        "import bytewax.testing\n"
        "fastflow.compat.uninstall()\n"
        "print(sorted(name for name in sys.modules if name.startswith('bytewax')))\n"
        "try:\n"
        "    import bytewax\n"
        "except ModuleNotFoundError:\n"
        "    print('gone')\n"
        "import fastflow.testing\n"
        "print(fastflow.testing.__name__)\n",
        tmp_path,
    )
    assert out == "[]\ngone\nfastflow.testing\n"


def test_installing_twice_adds_one_hook(tmp_path: Path) -> None:
    out = python(
        "import sys, fastflow.compat\n"
        "fastflow.compat.install()\n"
        "print(sum(type(f).__name__ == '_BytewaxAliasFinder' for f in sys.meta_path))\n",
        tmp_path,
    )
    assert out == "1\n"


def test_a_real_bytewax_is_left_alone(tmp_path: Path, fake_bytewax: Path) -> None:
    out = python(
        "import fastflow.compat\n"
        "import bytewax\n"
        "print(bytewax.WHO)\n"
        "try:\n"
        "    import bytewax.operators\n"
        "except ModuleNotFoundError as ex:\n"
        "    print(ex)\n",
        tmp_path,
        env=with_pythonpath(fake_bytewax),
    )
    assert out == "the real bytewax\nNo module named 'bytewax.operators'\n"


def test_fastflow_run_leaves_a_real_bytewax_alone(
    tmp_path: Path, fake_bytewax: Path, fastflow_command: List[str]
) -> None:
    (tmp_path / "flow.py").write_text(
        "import bytewax\n"
        "import fastflow.operators as op\n"
        "from fastflow.connectors.stdio import StdOutSink\n"
        "from fastflow.dataflow import Dataflow\n"
        "from fastflow.testing import TestingSource\n"
        "flow = Dataflow('real')\n"
        "op.output('out', op.input('inp', flow, TestingSource([bytewax.WHO])), StdOutSink())\n"
    )
    proc = subprocess.run(
        [*fastflow_command, "run", "flow.py"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env=with_pythonpath(fake_bytewax),
    )
    assert (proc.returncode, proc.stdout) == (0, "the real bytewax\n"), proc.stderr


# --- `fastflow compat enable`: Bytewax's own entry points without `fastflow run` ----------


@pytest.fixture
def bare_env(tmp_path: Path) -> Path:
    """A new virtual environment that sees fastflow (and only what this one has)."""
    import site
    import sysconfig

    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=120)
    ours = sysconfig.get_path("purelib")
    (Path(_purelib(env)) / "outer.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    assert site.getsitepackages()  # the test's own environment has a site-packages
    return env


def _purelib(env: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return subprocess.run([str(env / "bin" / "python"), "-c", code],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def _in(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(env / "bin" / "python"), *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=120)


def test_compat_enable_serves_python_m_bytewax_run(tmp_path: Path, bare_env: Path) -> None:
    (tmp_path / "flow.py").write_text(BYTEWAX_FLOW)
    before = _in(bare_env, "-m", "bytewax.run", "flow.py", cwd=tmp_path)
    assert before.returncode == 1 and "No module named 'bytewax'" in before.stderr

    enabled = _in(bare_env, "-m", "fastflow", "compat", "enable", cwd=tmp_path)
    pth = Path(_purelib(bare_env)) / "fastflow-bytewax-alias.pth"
    assert (enabled.returncode, enabled.stdout) == (
        0, f"wrote {pth}: `bytewax` now means fastflow in this environment "
           "(undo with `fastflow compat disable`)\n"
    )
    ran = _in(bare_env, "-m", "bytewax.run", "flow.py", cwd=tmp_path)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "('a', 2)\n('b', 1)\n", "")
    probe = _in(bare_env, "-c", "import bytewax.operators as op; print(op.__name__)", cwd=tmp_path)
    assert probe.stdout == "fastflow.operators\n"

    disabled = _in(bare_env, "-m", "fastflow", "compat", "disable", cwd=tmp_path)
    assert (disabled.returncode, disabled.stdout) == (0, f"removed {pth}\n")
    assert _in(bare_env, "-m", "bytewax.run", "flow.py", cwd=tmp_path).returncode == 1


def test_compat_enable_refuses_to_shadow_a_real_bytewax(
    tmp_path: Path, bare_env: Path, fake_bytewax: Path
) -> None:
    real = Path(_purelib(bare_env)) / "bytewax"
    real.mkdir()
    (real / "__init__.py").write_text(
        (fake_bytewax / "bytewax" / "__init__.py").read_text()
    )
    refused = _in(bare_env, "-m", "fastflow", "compat", "enable", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("fastflow compat: error: Bytewax is installed in this "
                                     f"environment ({real / '__init__.py'}): refusing to shadow it")
    assert not (Path(_purelib(bare_env)) / "fastflow-bytewax-alias.pth").exists()
