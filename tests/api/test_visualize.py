"""fastflow.visualize and `fastflow visualize`: the rendered step tree and its three drawings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import List

import pytest

import fastflow.operators as op
from fastflow.dataflow import Dataflow, Stream, operator
from fastflow.testing import TestingSink, TestingSource
from fastflow.visualize import (
    RenderedOperator,
    RenderedPort,
    to_json,
    to_mermaid,
    to_plantuml,
    to_rendered,
)


@operator
def double_evens(step_id: str, up: Stream[int]) -> Stream[int]:
    """A composite step: two substeps, the second fed by the first."""
    evens = op.filter("evens", up, lambda x: x % 2 == 0)
    return op.map("double", evens, lambda x: x * 2)


def branchy_flow() -> Dataflow:
    flow = Dataflow("vf")
    nums = op.input("inp", flow, TestingSource([1, 2]))
    split = op.branch("br", nums, lambda x: x > 1)
    merged = op.merge("mg", double_evens("de", split.trues), split.falses)
    op.output("out", merged, TestingSink([]))
    return flow


def test_rendered_ports_resolve_siblings_parents_and_substeps() -> None:
    (inp, br, de, mg, out) = to_rendered(branchy_flow()).substeps
    assert (inp.op_type, inp.step_name, inp.step_id) == ("input", "inp", "vf.inp")
    assert inp.inp_ports == []
    assert inp.out_ports == [RenderedPort("down", "vf.inp.down", [], [])]
    assert [p.port_name for p in br.out_ports] == ["trues", "falses"]
    assert de.inp_ports == [RenderedPort("up", "vf.de.up", ["vf.br.trues"], ["vf.br.trues"])]
    evens, double = de.substeps
    assert (evens.op_type, evens.step_name, evens.step_id) == ("filter", "evens", "vf.de.evens")
    # A substep's input comes from its parent's input port, or from a sibling.
    assert evens.inp_ports == [
        RenderedPort("up", "vf.de.evens.up", ["vf.de.up"], ["vf.br.trues"])
    ]
    assert double.inp_ports[0].from_port_ids == ["vf.de.evens.down"]
    # A composite's output comes from the substep output it passes on.
    (de_down,) = de.out_ports
    assert de_down.from_port_ids == ["vf.de.double.down"]
    assert de_down.from_stream_ids == double.out_ports[0].from_stream_ids
    assert mg.inp_ports == [
        RenderedPort(
            "ups",
            "vf.mg.ups",
            ["vf.de.down", "vf.br.falses"],
            [de_down.from_stream_ids[0], "vf.br.falses"],
        )
    ]
    assert out.out_ports == []


def leaves(step: RenderedOperator) -> List[RenderedOperator]:
    if not step.substeps:
        return [step]
    return [leaf for sub in step.substeps for leaf in leaves(sub)]


def test_every_branch_of_the_tree_ends_in_core_steps() -> None:
    rendered = to_rendered(branchy_flow())
    kinds = {leaf.op_type for top in rendered.substeps for leaf in leaves(top)}
    assert kinds == {"input", "branch", "flat_map_batch", "merge", "output"}


def test_mermaid_draws_the_top_level_steps() -> None:
    assert to_mermaid(branchy_flow()) == "\n".join(
        [
            "flowchart TD",
            'subgraph "vf (Dataflow)"',
            'vf.inp["inp (input)"]',
            'vf.br["br (branch)"]',
            'vf.inp -- "down → up" --> vf.br',
            'vf.de["de (double_evens)"]',
            'vf.br -- "trues → up" --> vf.de',
            'vf.mg["mg (merge)"]',
            'vf.de -- "down → ups" --> vf.mg',
            'vf.br -- "falses → ups" --> vf.mg',
            'vf.out["out (output)"]',
            'vf.mg -- "down → up" --> vf.out',
            "end",
        ]
    )


def test_mermaid_quotes_labels_and_replaces_unusable_ids() -> None:
    flow = Dataflow('say "hi"')
    nums = op.input("in put", flow, TestingSource([1]))
    op.output("out", nums, TestingSink([]))
    assert to_mermaid(flow).splitlines() == [
        "flowchart TD",
        'subgraph "say #quot;hi#quot; (Dataflow)"',
        'step0["in put (input)"]',
        'step1["out (output)"]',
        'step0 -- "down → up" --> step1',
        "end",
    ]


def _json_steps(step: dict) -> List[tuple]:
    """(step_id, op_type, port ids) of every step in a JSON rendering, depth first."""
    ports = [p["port_id"] for p in step["inp_ports"] + step["out_ports"]]
    here = [(step["step_id"], step["op_type"], ports)]
    return here + [s for sub in step["substeps"] for s in _json_steps(sub)]


def _rendered_steps(step: RenderedOperator) -> List[tuple]:
    ports = [p.port_id for p in step.inp_ports + step.out_ports]
    here = [(step.step_id, step.op_type, ports)]
    return here + [s for sub in step.substeps for s in _rendered_steps(sub)]


def test_json_has_every_step_with_its_type() -> None:
    data = json.loads(to_json(branchy_flow()))
    assert data["typ"] == "RenderedDataflow" and data["flow_id"] == "vf"
    # Every step of the tree, substeps included, with its type and ports.
    rendered = to_rendered(branchy_flow())
    assert [s for top in data["substeps"] for s in _json_steps(top)] == [
        s for top in rendered.substeps for s in _rendered_steps(top)
    ]
    de = data["substeps"][2]
    assert de["typ"] == "RenderedOperator"
    # The field names and their order are API surface: Bytewax's JSON format.
    assert list(de) == [
        "typ", "op_type", "step_name", "step_id", "inp_ports", "out_ports", "substeps"
    ]
    assert de["inp_ports"] == [
        {
            "typ": "RenderedPort",
            "port_name": "up",
            "port_id": "vf.de.up",
            "from_port_ids": ["vf.br.trues"],
            "from_stream_ids": ["vf.br.trues"],
        }
    ]
    assert [s["step_id"] for s in de["substeps"]] == ["vf.de.evens", "vf.de.double"]


def simple_flow() -> Dataflow:
    flow = Dataflow("s")
    nums = op.input("inp", flow, TestingSource([1]))
    op.output("out", op.map("m", nums, str), TestingSink([]))
    return flow


def test_plantuml_top_level() -> None:
    m_down = to_rendered(simple_flow()).substeps[1].out_ports[0].from_stream_ids[0]
    assert to_plantuml(simple_flow()) == "\n".join(
        [
            "@startuml",
            "component s.inp [",
            "    s.inp (input)",
            "]",
            "component s.inp {",
            "    portout s.inp.down",
            "}",
            "component s.m [",
            "    s.m (map)",
            "]",
            "component s.m {",
            "    portin s.m.up",
            "    portout s.m.down",
            "    s.inp.down --> s.m.up : s.inp.down",
            "}",
            "component s.out [",
            "    s.out (output)",
            "]",
            "component s.out {",
            "    portin s.out.up",
            f"    s.m.down --> s.out.up : {m_down}",
            "}",
            "@enduml",
        ]
    )


def test_plantuml_recursive_nests_substeps_and_links_their_ports() -> None:
    text = to_plantuml(simple_flow(), recursive=True)
    (inner,) = to_rendered(simple_flow()).substeps[1].substeps
    assert f"    component {inner.step_id} {{" in text.splitlines()
    assert f"        s.m.up --> {inner.step_id}.up : s.inp.down" in text.splitlines()
    assert f"    {inner.step_id}.down --> s.m.down : {inner.step_id}.down" in text.splitlines()


def test_to_rendered_needs_a_dataflow() -> None:
    with pytest.raises(TypeError, match="expected a Dataflow; got 'str'"):
        to_rendered("flow")  # type: ignore[arg-type]


# The command.

FLOW_FILE = """
import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource
from fastflow.connectors.stdio import StdOutSink

def make(name):
    flow = Dataflow(name)
    op.output("out", op.input("inp", flow, TestingSource([1])), StdOutSink())
    return flow

flow = make("cli")
"""


def flow_file_flow(name: str) -> Dataflow:
    """The flow FLOW_FILE's ``make(name)`` builds, built in this process."""
    namespace: dict = {}
    exec(FLOW_FILE, namespace)
    return namespace["make"](name)


def visualize(fastflow_command: List[str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*fastflow_command, "visualize", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )


def test_command_prints_mermaid_by_default(tmp_path: Path, fastflow_command: List[str]) -> None:
    (tmp_path / "flow.py").write_text(FLOW_FILE)
    proc = visualize(fastflow_command, "flow.py", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == (
        'flowchart TD\nsubgraph "cli (Dataflow)"\ncli.inp["inp (input)"]\n'
        'cli.out["out (output)"]\ncli.inp -- "down → up" --> cli.out\nend\n'
    )


@pytest.mark.parametrize("flag", ["--format", "-f", "--output-format", "-o"])
def test_command_prints_json(tmp_path: Path, fastflow_command: List[str], flag: str) -> None:
    (tmp_path / "flow.py").write_text(FLOW_FILE)
    proc = visualize(fastflow_command, 'flow:make("other")', flag, "json", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout) == json.loads(to_json(flow_file_flow("other")))


def test_command_prints_plantuml(tmp_path: Path, fastflow_command: List[str]) -> None:
    (tmp_path / "flow.py").write_text(FLOW_FILE)
    flat = visualize(fastflow_command, "flow.py", "--format", "plantuml", cwd=tmp_path)
    deep = visualize(fastflow_command, "flow.py", "--format", "plantuml", "-r", cwd=tmp_path)
    assert (flat.returncode, flat.stderr) == (0, "")
    assert flat.stdout == to_plantuml(flow_file_flow("cli")) + "\n"
    assert flat.stdout.startswith("@startuml\ncomponent cli.inp [\n")
    assert deep.stdout == flat.stdout  # input and output have no substeps


def test_command_rejects_an_unknown_format(tmp_path: Path, fastflow_command: List[str]) -> None:
    proc = visualize(fastflow_command, "flow.py", "--format", "svg", cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid choice: 'svg'" in proc.stderr


def test_command_reports_a_missing_flow(tmp_path: Path, fastflow_command: List[str]) -> None:
    proc = visualize(fastflow_command, "nope.py", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "fastflow visualize: error: flow file 'nope.py' does not exist\n"
