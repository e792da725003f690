"""Flatten a dataflow's step tree into the core steps the worker runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastflow.dataflow import Dataflow, Operator

_OUTPUT_KINDS = ("output", "inspect_debug")


@dataclass(frozen=True)
class CoreStep:
    """One core step: ``kind`` reads streams ``ups`` and writes ``downs`` (port -> stream)."""

    step_id: str
    kind: str
    ups: tuple[str, ...]
    downs: dict[str, str]
    args: dict[str, Any]


def _core_steps(steps: list[Operator]) -> Iterator[Operator]:
    for step in steps:
        if step.core is not None:
            yield step
        else:
            yield from _core_steps(step.substeps)


def flatten(flow: Dataflow) -> list[CoreStep]:
    """Return the flow's core steps in an order where every stream is written before it is read.

    Building order already is such an order: a step can only take streams
    that existed when it was added.
    """
    if not isinstance(flow, Dataflow):
        raise TypeError(f"expected a Dataflow; got {type(flow).__name__!r}")
    plan = [
        CoreStep(op.step_id, op.core.kind, op.core.ups, dict(op.core.downs), dict(op.core.args))
        for op in _core_steps(flow.substeps)
        if op.core is not None
    ]
    if not any(step.kind == "input" for step in plan):
        raise ValueError(
            "Dataflow needs to contain at least one input step; "
            "add with `fastflow.operators.input`"
        )
    if not any(step.kind in _OUTPUT_KINDS for step in plan):
        raise ValueError(
            "Dataflow needs to contain at least one output or inspect step; "
            "add with `fastflow.operators.output` or `fastflow.operators.inspect`"
        )
    return plan
