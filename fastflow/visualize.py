"""Draw a dataflow's step tree: Mermaid, PlantUML, or JSON for tools.

Every operator call is a step with input ports (its stream parameters) and
output ports (the streams it returns); a step built from other operators has
them as substeps. :func:`to_rendered` resolves, at each level of the tree,
which port feeds which, and the renderers draw that.

>>> import fastflow.operators as op
>>> from fastflow.dataflow import Dataflow
>>> from fastflow.testing import TestingSource
>>> flow = Dataflow("viz")
>>> nums = op.input("nums", flow, TestingSource([1, 2]))
>>> _ = op.inspect("show", op.map("double", nums, lambda x: x * 2))
>>> print(to_mermaid(flow))
flowchart TD
subgraph "viz (Dataflow)"
viz.nums["nums (input)"]
viz.double["double (map)"]
viz.nums -- "down → up" --> viz.double
viz.show["show (inspect)"]
viz.double -- "down → up" --> viz.show
end
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastflow._stdout import guard_stdout

if TYPE_CHECKING:  # imported when needed, so that `fastflow --help` starts fast
    from fastflow.dataflow import Dataflow, Operator

__all__ = [
    "RenderedDataflow",
    "RenderedOperator",
    "RenderedPort",
    "main",
    "to_json",
    "to_mermaid",
    "to_plantuml",
    "to_rendered",
]


@dataclass(frozen=True)
class RenderedPort:
    """A step's port: ``port_id`` is ``"{step_id}.{port_name}"``.

    ``from_port_ids`` are the ports feeding it, one level up for an input port
    (a sibling's output, or the enclosing step's input) and one level down
    for an output port (the substep output it passes on; empty for core
    steps). ``from_stream_ids`` are the streams those carry.
    """

    port_name: str
    port_id: str
    from_port_ids: list[str]
    from_stream_ids: list[str]


@dataclass(frozen=True)
class RenderedOperator:
    """A step: its operator (``op_type``), its name in its parent, its full id and its ports."""

    op_type: str
    step_name: str
    step_id: str
    inp_ports: list[RenderedPort]
    out_ports: list[RenderedPort]
    substeps: list[RenderedOperator]


@dataclass(frozen=True)
class RenderedDataflow:
    """The whole flow: its id and its top-level steps."""

    flow_id: str
    substeps: list[RenderedOperator]


def _render_steps(steps: list[Operator], scope: dict[str, str]) -> list[RenderedOperator]:
    """Render sibling ``steps``; ``scope`` maps each stream visible to them to its port."""
    scope = dict(scope)
    rendered = []
    for step in steps:
        inp_ports = [
            RenderedPort(port, f"{step.step_id}.{port}", [scope.get(s, s) for s in ids], list(ids))
            for port, ids in step.ups.items()
        ]
        inner = dict(scope)
        inner.update((s, port.port_id) for port in inp_ports for s in port.from_stream_ids)
        substeps = _render_steps(step.substeps, inner)
        for sub, sub_op in zip(substeps, step.substeps, strict=True):
            inner.update((stream, f"{sub.step_id}.{port}") for port, stream in sub_op.downs.items())
        out_ports = []
        for port, stream in step.downs.items():
            port_id = f"{step.step_id}.{port}"
            if step.core is not None:
                out_ports.append(RenderedPort(port, port_id, [], []))
            else:
                out_ports.append(RenderedPort(port, port_id, [inner.get(stream, stream)], [stream]))
            scope[stream] = port_id
        rendered.append(
            RenderedOperator(
                step.step_name,
                step.step_id.rpartition(".")[2],
                step.step_id,
                inp_ports,
                out_ports,
                substeps,
            )
        )
    return rendered


def to_rendered(flow: Dataflow) -> RenderedDataflow:
    """Resolve the flow's step tree and the port each stream comes from."""
    from fastflow.dataflow import Dataflow

    if not isinstance(flow, Dataflow):
        raise TypeError(f"expected a Dataflow; got {type(flow).__name__!r}")
    return RenderedDataflow(flow.flow_id, _render_steps(flow.substeps, {}))


def _to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"typ": type(obj).__name__}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list):
            value = [_to_dict(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[f.name] = value
    return out


def to_json(flow: Dataflow) -> str:
    """The rendered flow as indented JSON; every object has a ``"typ"`` naming its class."""
    return json.dumps(_to_dict(to_rendered(flow)), indent=2, ensure_ascii=False)


_SAFE_ID = re.compile(r"[A-Za-z0-9_.]+")


def _mermaid_ids(steps: list[RenderedOperator]) -> dict[str, str]:
    """Mermaid node ids: the step id when it is safe to use as one, else a numbered one."""
    return {
        step.step_id: step.step_id if _SAFE_ID.fullmatch(step.step_id) else f"step{n}"
        for n, step in enumerate(steps)
    }


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(flow: Dataflow) -> str:
    """A Mermaid flowchart of the flow's top-level steps and the streams between them."""
    rendered = to_rendered(flow)
    ids = _mermaid_ids(rendered.substeps)
    owner = {port.port_id: step.step_id for step in rendered.substeps for port in step.out_ports}
    lines = ["flowchart TD", f'subgraph "{_mermaid_text(rendered.flow_id)} (Dataflow)"']
    for step in rendered.substeps:
        lines.append(f'{ids[step.step_id]}["{_mermaid_text(step.step_name)} ({step.op_type})"]')
        for port in step.inp_ports:
            for from_id in port.from_port_ids:
                if from_id in owner:
                    from_port = from_id.rpartition(".")[2]
                    label = _mermaid_text(f"{from_port} → {port.port_name}")
                    lines.append(f'{ids[owner[from_id]]} -- "{label}" --> {ids[step.step_id]}')
    lines.append("end")
    return "\n".join(lines)


def _plantuml_steps(steps: list[RenderedOperator], recursive: bool, indent: str) -> list[str]:
    lines = []
    for step in steps:
        lines += [
            f"{indent}component {step.step_id} [",
            f"{indent}    {step.step_id} ({step.op_type})",
            f"{indent}]",
            f"{indent}component {step.step_id} {{",
        ]
        inner = indent + "    "
        lines += [f"{inner}portin {port.port_id}" for port in step.inp_ports]
        lines += [f"{inner}portout {port.port_id}" for port in step.out_ports]
        for port in step.inp_ports:
            for from_id, stream in zip(port.from_port_ids, port.from_stream_ids, strict=True):
                lines.append(f"{inner}{from_id} --> {port.port_id} : {stream}")
        if recursive:
            lines += _plantuml_steps(step.substeps, recursive, inner)
            for port in step.out_ports:
                for from_id, stream in zip(port.from_port_ids, port.from_stream_ids, strict=True):
                    lines.append(f"{inner}{from_id} --> {port.port_id} : {stream}")
        lines.append(f"{indent}}}")
    return lines


def to_plantuml(flow: Dataflow, recursive: bool = False) -> str:
    """A PlantUML component diagram of the flow; ``recursive`` also draws every substep."""
    rendered = to_rendered(flow)
    return "\n".join(["@startuml", *_plantuml_steps(rendered.substeps, recursive, ""), "@enduml"])


_RENDERERS: dict[str, Callable[[Dataflow, bool], str]] = {
    "mermaid": lambda flow, _recursive: to_mermaid(flow),
    "json": lambda flow, _recursive: to_json(flow),
    "plantuml": to_plantuml,
}

EXIT_BAD_INPUT = 2

VISUALIZE_DESCRIPTION = (
    "Print a diagram of a dataflow's steps and the streams between them, to paste into a "
    "Mermaid or PlantUML renderer (or JSON, for tools)."
)


def add_visualize_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``fastflow visualize`` (and ``python -m fastflow.visualize``)."""
    parser.add_argument(
        "import_str",
        metavar="IMPORT_STR",
        help="the flow to draw, named as for `fastflow run`: path/to/flow.py, module, "
        'module:variable or module:factory("arg")',
    )
    parser.add_argument(
        "-f", "--format", "-o", "--output-format",
        dest="format", choices=list(_RENDERERS), default="mermaid",
        help="what to print: a Mermaid flowchart, the step tree as JSON, or a PlantUML "
        "component diagram (default: mermaid)",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true",
        help="PlantUML only: also draw the steps each operator is made of "
        "(Mermaid shows the top level, JSON always has every step)",
    )


def visualize_command(args: argparse.Namespace, prog: str) -> int:
    """Print the diagram of the flow ``args.import_str`` names; returns the exit code."""
    import fastflow.compat  # noqa: F401 - Bytewax flows can be drawn unchanged
    from fastflow._locate import FlowImportFailed, FlowNotFound, locate_dataflow

    try:
        flow = locate_dataflow(args.import_str)
    except FlowNotFound as ex:
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FlowImportFailed as ex:
        traceback.print_exception(ex.__cause__, file=sys.stderr)
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(_RENDERERS[args.format](flow, args.recursive))
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m fastflow.visualize") -> int:
    """Parse ``argv`` as ``fastflow visualize`` does and print the diagram; return the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=VISUALIZE_DESCRIPTION)
    add_visualize_arguments(parser)
    args = parser.parse_args(argv)
    return guard_stdout(lambda: visualize_command(args, prog), prog)


if __name__ == "__main__":
    sys.exit(main())
