"""The standalone binary runs several processes too (`-p N`), under `env -i`.

Reuses the fixtures of tests/_binary.py: the binary is built once per session, when stale.
"""

from __future__ import annotations

from _binary import Sandbox, binary, pytestmark, sandbox  # noqa: F401 - fixtures

FLOW = """
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

flow = Dataflow("bin")
keyed = op.key_on("k", op.input("inp", flow, TestingSource(range(10_000))), lambda i: str(i % 7))
op.output("out", op.fold_final("sum", keyed, lambda: 0, lambda a, i: a + i), StdOutSink())
"""


def test_the_binary_runs_several_processes_and_resumes_their_store(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    sandbox.write("flow.py", FLOW)
    one = sandbox.run(sandbox.exe, "run", "flow.py")
    two = sandbox.run(sandbox.exe, "run", "flow.py", "-p", "2", "-w", "2")
    assert (two.returncode, two.stderr) == (0, "")
    assert sorted(two.stdout.splitlines()) == sorted(one.stdout.splitlines())
    assert len(one.stdout.splitlines()) == 7
    assert sandbox.run(sandbox.exe, "init-recovery", "db", "2").returncode == 0
    first = sandbox.run(sandbox.exe, "run", "flow.py", "-p", "2", "-r", "db")
    assert (first.returncode, sorted(first.stdout.splitlines())) == (
        0, sorted(one.stdout.splitlines())
    )
    again = sandbox.run(sandbox.exe, "run", "flow.py", "-p", "3", "-r", "db")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")  # all input done


def test_the_binary_says_ray_needs_the_pip_installed_command(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    sandbox.write("flow.py", FLOW)
    proc = sandbox.run(sandbox.exe, "run", "flow.py", "--ray", "-p", "2")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, "", "fastflow run: error: --ray needs the pip-installed fastflow command "
        "(pip install 'fastflow[ray]'): this standalone executable does not include Ray\n",
    )
