"""Windowing scenarios, runnable against fastflow or (for parity) against Bytewax.

Every scenario builds flows with the modules of the engine it is given, runs
them with ``TestingSource``/``TestingSink`` and an :class:`EventClock` whose
system time is fixed, and returns what the ``down``, ``late`` and ``meta``
streams got, normalized to plain values (see :func:`normalize`).

``python windowing_scenarios.py bytewax`` (with Bytewax installed) prints the
results of all scenarios as a ``repr`` that ``ast.literal_eval`` reads back.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any, Callable, Dict, List

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
FIXED_NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    """The timestamp ``seconds`` after :data:`T0`."""
    return T0 + timedelta(seconds=seconds)


@dataclass
class Engine:
    """The modules of one engine (``fastflow`` or ``bytewax``) the scenarios use."""

    name: str
    op: ModuleType
    win: ModuleType
    dataflow: ModuleType
    testing: ModuleType
    recovery: ModuleType

    @classmethod
    def load(cls, name: str) -> Engine:
        """Import the engine's modules."""
        mods = [
            importlib.import_module(f"{name}.{mod}")
            for mod in ("operators", "operators.windowing", "dataflow", "testing", "recovery")
        ]
        return cls(name, *mods)

    @property
    def tiny_epoch(self) -> timedelta:
        """An epoch interval that closes an epoch after every batch."""
        return timedelta(0) if self.name == "bytewax" else timedelta(microseconds=1)

    def clock(self, wait: float | timedelta = 0, ts: Callable[[Any], float] = lambda v: v) -> Any:
        """An event clock reading ``at(ts(value))``, waiting ``wait`` (seconds), at a fixed now."""
        if not isinstance(wait, timedelta):
            wait = timedelta(seconds=wait)
        return self.win.EventClock(lambda v: at(ts(v)), wait, now_getter=lambda: FIXED_NOW)

    def tumbling(self, length: float = 10) -> Any:
        """Tumbling windows of ``length`` seconds from :data:`T0`."""
        return self.win.TumblingWindower(timedelta(seconds=length), T0)

    def sliding(self, length: float, offset: float, align: float = 0) -> Any:
        """Sliding windows in seconds, aligned to ``at(align)``."""
        return self.win.SlidingWindower(
            timedelta(seconds=length), timedelta(seconds=offset), at(align)
        )

    def session(self, gap: float) -> Any:
        """Session windows with a ``gap`` in seconds."""
        return self.win.SessionWindower(timedelta(seconds=gap))

    def run(
        self,
        inputs: List[List[Any]],
        build: Callable[..., Any],
        batch_size: int = 1,
        **run_kw: Any,
    ) -> Dict[str, List[Any]]:
        """Run ``build(*input_streams)`` and return its normalized output streams."""
        flow = self.dataflow.Dataflow("df")
        streams = [
            self.op.input(f"in{i}", flow, self.testing.TestingSource(items, batch_size))
            for i, items in enumerate(inputs)
        ]
        out = build(*streams)
        got: Dict[str, List[Any]] = {"down": [], "late": [], "meta": []}
        for port, items in got.items():
            self.op.output(port, getattr(out, port), self.testing.TestingSink(items))
        self.testing.run_main(flow, **run_kw)
        return normalize(got)


def normalize(value: Any) -> Any:
    """Plain, comparable values: window metadata as ``("meta", open_s, close_s, merged)``.

    Datetimes become seconds after :data:`T0`, sets sorted lists tagged ``"set"``.
    """
    if isinstance(value, datetime):
        return ("at", (value - T0).total_seconds())
    if is_dataclass(value) and type(value).__name__ == "WindowMetadata":
        return ("meta", *normalize([value.open_time, value.close_time]), sorted(value.merged_ids))
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, *(normalize(getattr(value, f.name)) for f in fields(value)))
    if isinstance(value, (set, frozenset)):
        return ("set", sorted(normalize(list(value)), key=repr))
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(normalize(v) for v in value)
    return value


def by_key(outputs: Dict[str, List[Any]]) -> Dict[str, Dict[str, List[Any]]]:
    """Each stream's ``(key, value)`` items as ``{key: [value, ...]}`` (arrival order kept)."""
    grouped: Dict[str, Dict[str, List[Any]]] = {}
    for port, items in outputs.items():
        grouped[port] = {}
        for key, value in items:
            grouped[port].setdefault(key, []).append(value)
    return grouped


SCENARIOS: Dict[str, Callable[[Engine], Any]] = {}


def scenario(fn: Callable[[Engine], Any]) -> Callable[[Engine], Any]:
    """Register a scenario under its function name."""
    SCENARIOS[fn.__name__] = fn
    return fn


def _collect(e: Engine, windower: Any, wait: float = 0, **kw: Any) -> Callable[[Any], Any]:
    return lambda s: e.win.collect_window("cw", s, e.clock(wait), windower, **kw)


def _keyed(*pairs: Any) -> List[Any]:
    """``_keyed("a", 1, "b", 2)`` -> ``[("a", 1), ("b", 2)]``."""
    return list(zip(pairs[::2], pairs[1::2], strict=True))


OUT_OF_ORDER = _keyed("a", 3, "a", 1, "a", 12, "a", 8, "a", 2, "a", 16, "a", 9.999, "a", 10,
                      "b", 4, "a", 30, "b", 2, "b", 21)


@scenario
def tumbling_in_order(e: Engine) -> Any:
    items = _keyed("a", 1, "a", 2, "b", 3, "a", 12, "b", 25, "a", 19.5, "a", 20)
    return e.run([items], _collect(e, e.tumbling()))


@scenario
def tumbling_out_of_order(e: Engine) -> Any:
    return {
        ordered: e.run([OUT_OF_ORDER], _collect(e, e.tumbling(), wait=5, ordered=ordered))
        for ordered in (True, False)
    }


@scenario
def tumbling_batches(e: Engine) -> Any:
    return {
        size: e.run([OUT_OF_ORDER], _collect(e, e.tumbling(), wait=5), batch_size=size)
        for size in (2, 5, 100)
    }


@scenario
def tumbling_empty_windows_and_negative_ids(e: Engine) -> Any:
    items = _keyed("a", -15, "a", 1, "a", 45, "a", 46)
    return e.run([items], _collect(e, e.tumbling()))


@scenario
def equal_timestamps(e: Engine) -> Any:
    items = _keyed("a", 5, "a", 5, "a", 10, "a", 10, "a", 7, "a", 10)
    return {
        ordered: e.run([items], _collect(e, e.tumbling(), wait=0, ordered=ordered))
        for ordered in (True, False)
    }


@scenario
def sliding(e: Engine) -> Any:
    items = _keyed("a", 1, "b", 3, "a", 12, "a", 2, "b", 25, "a", 5, "a", 7)
    return {
        "overlapping": e.run([items], _collect(e, e.sliding(10, 5), wait=5)),
        "unaligned": e.run([items], _collect(e, e.sliding(10, 3, align=1), wait=2)),
        "tumbling_equivalent": e.run([items], _collect(e, e.sliding(10, 10), wait=5)),
    }


@scenario
def session(e: Engine) -> Any:
    items = _keyed("a", 10, "a", 20, "a", 2, "a", 15, "a", 30, "a", 26, "a", 35, "a", 21,
                   "b", 1, "b", 1, "a", 60, "b", 50)
    return {
        (wait, ordered): e.run([items], _collect(e, e.session(5), wait=wait, ordered=ordered))
        for wait in (0, 10)
        for ordered in (True, False)
    }


@scenario
def session_merges(e: Engine) -> Any:
    chain = _keyed("a", 40, "a", 30, "a", 20, "a", 10, "a", 0, "a", 35, "a", 25, "a", 15, "a", 5)
    bridge = _keyed("a", 20, "a", 10, "a", 15, "a", 1, "a", 5, "a", 7.5, "a", 100)
    return {
        (name, ordered, size): e.run(
            [items], _collect(e, e.session(5), wait=100, ordered=ordered), batch_size=size
        )
        for name, items in (("chain", chain), ("bridge", bridge))
        for ordered in (True, False)
        for size in (1, 3)
    }


@scenario
def session_zero_gap(e: Engine) -> Any:
    items = _keyed("a", 1, "a", 1, "a", 2, "a", 1.5, "a", 3)
    return e.run([items], _collect(e, e.session(0), wait=1))


@scenario
def fold_and_reduce(e: Engine) -> Any:
    items = _keyed("a", 1, "a", 10, "a", 5, "a", 7.5, "b", 3, "a", 30)
    sess = e.session(3)

    def fold(s: Any) -> Any:
        return e.win.fold_window(
            "fw", s, e.clock(100), sess, list, lambda acc, v: acc + [v],
            lambda a, b: ["merged", a, b], ordered=False,
        )

    def reduce(s: Any) -> Any:
        return e.win.reduce_window("rw", s, e.clock(100), sess, lambda a, b: a * 100 + b)

    return {"fold": e.run([items], fold), "reduce": e.run([items], reduce)}


@scenario
def max_min_ties(e: Engine) -> Any:
    items = _keyed("a", (1, "first"), "a", (7, "tie"), "a", (2, "x"), "a", (7, "second"),
                   "a", (1, "last"), "a", (3, "next"))

    def ts(v: Any) -> float:
        return {"first": 1, "tie": 2, "x": 3, "second": 4, "last": 5, "next": 15}[v[1]]

    def build(fn: Any) -> Callable[[Any], Any]:
        return lambda s: fn("m", s, e.clock(0, ts), e.tumbling(), by=lambda v: v[0])

    return {"max": e.run([items], build(e.win.max_window)),
            "min": e.run([items], build(e.win.min_window)),
            "max_identity": e.run([_keyed("a", 3, "a", 2, "a", 3.0)],
                                  lambda s: e.win.max_window("m", s, e.clock(5), e.tumbling()))}


@scenario
def count(e: Engine) -> Any:
    items = [("apple", 1), ("banana", 5), ("apple", 10), ("banana", 15), ("apple", 20),
             ("cherry", 25), ("apple", 2), ("apple", 5), ("apple", 7.5)]
    return {
        name: e.run([items], lambda s, w=windower, wait=wait: e.win.count_window(
            "cw", s, e.clock(wait, lambda v: v[1]), w, lambda v: v[0]))
        for name, windower, wait in (("tumbling", e.tumbling(15), 0),
                                     ("session", e.session(3), 100))
    }


@scenario
def collect_into(e: Engine) -> Any:
    items = _keyed("a", ("k", 1), "a", ("j", 3), "a", ("k", 2), "a", ("z", 12), "a", ("j", 2.5))
    clock = e.clock(5, lambda v: v[1])
    return {
        into.__name__: e.run([items], lambda s, into=into: e.win.collect_window(
            "cw", s, clock, e.session(3), into=into, ordered=False))
        for into in (list, set, dict)
    }


def recorder_logic(e: Engine) -> Any:
    """A WindowLogic of engine ``e`` that emits every call it gets (shared by the tests)."""
    class Recorder(e.win.WindowLogic):  # type: ignore[name-defined,misc]
        def __init__(self, resume: Any) -> None:
            self.seen = list(resume or [])

        def on_value(self, value: Any) -> Any:
            self.seen.append(value)
            return [("value", value)]

        def on_merge(self, original: Any) -> Any:
            self.seen += original.seen
            return [("merge", list(original.seen))]

        def on_close(self) -> Any:
            return [("close", self.seen)]

        def snapshot(self) -> Any:
            return list(self.seen)

    return Recorder


@scenario
def window_logic_calls(e: Engine) -> Any:
    items = _keyed("a", 10, "a", 20, "a", 2, "a", 15, "b", 4, "a", 30, "a", 26, "a", 22, "a", 60)
    recorder = recorder_logic(e)
    return {
        (name, ordered): e.run([items], lambda s, w=windower, o=ordered: e.win.window(
            "w", s, e.clock(10), w, recorder, ordered=o))
        for name, windower in (("session", e.session(5)), ("sliding", e.sliding(10, 5)))
        for ordered in (True, False)
    }


JOIN_LEFT = _keyed("a", ("L1", 1), "a", ("L2", 3), "b", ("L3", 4), "a", ("L4", 12),
                   "c", ("L5", 30), "a", ("L6", 5))
JOIN_RIGHT = _keyed("a", ("R1", 2), "a", ("R2", 4), "a", ("R3", 15), "c", ("R4", 1))
MODES = [(i, m) for i in ("first", "last", "product") for m in ("complete", "final", "running")]


@scenario
def join_tumbling(e: Engine) -> Any:
    clock = e.clock(5, lambda v: v[1])
    return {
        (ins, em): e.run([JOIN_LEFT, JOIN_RIGHT], lambda left, right, i=ins, m=em:
                         e.win.join_window("j", clock, e.tumbling(), left, right,
                                           insert_mode=i, emit_mode=m))
        for ins, em in MODES
    }


@scenario
def join_session_merges(e: Engine) -> Any:
    # Both engines take one item of each input per round, but Bytewax hands the
    # round's items to the window step as one batch (keys in sorted order), and
    # fastflow one input's batch at a time. The "z" fillers keep each round to
    # one item of key "a", so each key's outputs are the same in both engines.
    left = _keyed("a", ("L1", 1), "z", ("Z", 0), "a", ("L2", 5), "z", ("Z", 0), "a", ("L3", 6))
    right = _keyed("z", ("Z", 0), "a", ("R1", 10), "z", ("Z", 0), "a", ("R0", 9),
                   "z", ("Z", 0), "a", ("R2", 7.5))
    clock = e.clock(100, lambda v: v[1])
    return {
        (ins, em, ordered): by_key(e.run([left, right], lambda l_, r_, i=ins, m=em, o=ordered:
                                         e.win.join_window("j", clock, e.session(3), l_, r_,
                                                           insert_mode=i, emit_mode=m, ordered=o)))
        for ins, em in MODES
        for ordered in (True, False)
    }


@scenario
def join_one_and_three_sides(e: Engine) -> Any:
    clock = e.clock(5, lambda v: v[1])
    one = e.run([JOIN_LEFT], lambda s: e.win.join_window("j", clock, e.tumbling(), s))
    three = e.run(
        [JOIN_LEFT, JOIN_RIGHT, _keyed("a", ("T1", 2), "b", ("T2", 5))],
        lambda *s: e.win.join_window("j", clock, e.tumbling(), *s, emit_mode="complete"),
    )
    return {"one": one, "three": three}


@scenario
def system_clock(e: Engine) -> Any:
    hour = e.win.TumblingWindower(
        timedelta(hours=1), datetime.now(timezone.utc) - timedelta(minutes=30)
    )
    items = _keyed("a", 1, "b", 2, "a", 3)
    out = e.run([items], lambda s: e.win.collect_window("cw", s, e.win.SystemClock(), hour))
    return out["down"]


@scenario
def wait_forever(e: Engine) -> Any:
    """``wait_for_system_duration=timedelta.max``: nothing is late, windows close at the end."""
    clock = e.clock(timedelta.max)
    forever = {
        "collect": e.run([OUT_OF_ORDER], _collect(e, e.tumbling(), wait=timedelta.max)),
        "unordered": e.run([OUT_OF_ORDER], _collect(e, e.sliding(10, 5), wait=timedelta.max,
                                                    ordered=False)),
        "session": e.run([OUT_OF_ORDER], _collect(e, e.session(3), wait=timedelta.max)),
        "count": e.run([[v for _k, v in OUT_OF_ORDER]], lambda s: e.win.count_window(
            "c", s, clock, e.tumbling(), lambda v: "all" if v < 20 else "late ones")),
        "fold": e.run([OUT_OF_ORDER], lambda s: e.win.fold_window(
            "f", s, clock, e.tumbling(), list, lambda acc, v: [*acc, v], lambda a, b: a + b)),
        "reduce": e.run([OUT_OF_ORDER], lambda s: e.win.reduce_window(
            "r", s, clock, e.tumbling(), lambda a, b: a * 100 + b)),
        "max": e.run([OUT_OF_ORDER], lambda s: e.win.max_window("m", s, clock, e.tumbling())),
        "min": e.run([OUT_OF_ORDER], lambda s: e.win.min_window("m", s, clock, e.tumbling())),
        "window": e.run([OUT_OF_ORDER], lambda s: e.win.window(
            "w", s, clock, e.session(5), recorder_logic(e))),
    }
    join_clock = e.clock(timedelta.max, lambda v: v[1])
    for insert, emit in MODES:
        forever[f"join_{insert}_{emit}"] = e.run(
            [JOIN_LEFT, JOIN_RIGHT], lambda *s, i=insert, m=emit: e.win.join_window(
                "j", join_clock, e.tumbling(), *s, insert_mode=i, emit_mode=m))
    return forever


UTC_MIN = datetime.min.replace(tzinfo=timezone.utc)
UTC_MAX = datetime.max.replace(tzinfo=timezone.utc)
US = timedelta(microseconds=1)
# Near the ends of time, but with every window's bounds inside it (Bytewax
# raises OverflowError for a window that would open or close outside).
NEAR_ENDS = [UTC_MIN + timedelta(seconds=10), UTC_MIN + timedelta(seconds=10) + US,
             UTC_MIN + timedelta(seconds=17), at(3), UTC_MAX - timedelta(seconds=20),
             UTC_MAX - timedelta(seconds=15) - US, UTC_MAX - timedelta(seconds=15)]


@scenario
def ends_of_time(e: Engine) -> Any:
    """Timestamps next to ``datetime.min``/``max``, waits of zero, 5 s and forever."""
    return {
        (name, str(wait), order, size): e.run(
            [[("a", ts) for ts in (NEAR_ENDS if order == "up" else NEAR_ENDS[::-1])]],
            lambda s, w=windower, wait=wait: e.win.collect_window(
                "cw", s, e.win.EventClock(lambda t: t, wait, now_getter=lambda: FIXED_NOW), w),
            batch_size=size,
        )
        for name, windower in (("tumbling", e.tumbling()), ("sliding", e.sliding(10, 5)),
                               ("session", e.session(5)), ("session_0", e.session(0)))
        for wait in (timedelta(0), timedelta(seconds=5), timedelta.max)
        for order in ("up", "down")
        for size in (1, 4)
    }


@scenario
def system_clock_steps_back(e: Engine) -> Any:
    """The system clock goes back 20 s, then forward again (NTP, a changed clock).

    Each value is ``(event seconds, system seconds)``; a map step sets the
    clock's system time from it before the window step reads it.
    """
    now = [FIXED_NOW]

    def set_now(item: Any) -> Any:
        key, (event_s, system_s) = item
        now[0] = FIXED_NOW + timedelta(seconds=system_s)
        return key, event_s

    items = _keyed("a", (5, 0), "a", (2, -20), "a", (4, -20), "a", (12, -5), "a", (9, 5),
                   "a", (30, 6))
    clock = e.win.EventClock(at, timedelta(0), now_getter=lambda: now[0])
    return e.run([items], lambda s: e.win.collect_window(
        "cw", e.op.map("set_now", s, set_now), clock, e.tumbling()))


def _runs(e: Engine, items: List[Any], build: Callable[..., Any], count: int, **kw: Any) -> Any:
    """Run the same flow ``count`` times on one recovery directory; each run's outputs."""
    with tempfile.TemporaryDirectory() as db_dir:
        e.recovery.init_db_dir(db_dir, 1)
        config = e.recovery.RecoveryConfig(db_dir)
        return [e.run([items], build, recovery_config=config, **kw) for _ in range(count)]


@scenario
def resume_after_eof(e: Engine) -> Any:
    eof = e.testing.TestingSource.EOF
    items = [*_keyed("a", 1, "a", 12, "b", 3), eof(), *_keyed("a", 5, "a", 14, "b", 25), eof(),
             *_keyed("a", 13, "a", 40)]
    return {
        name: _runs(e, list(items), _collect(e, windower, wait=5), 3)
        for name, windower in (("tumbling", e.tumbling()), ("session", e.session(5)))
    }


@scenario
def resume_mid_window_after_abort(e: Engine) -> Any:
    def items() -> List[Any]:
        abort = e.testing.TestingSource.ABORT()
        return [*_keyed("a", 1, "a", 12, "b", 3, "a", 4, "b", 6), abort,
                *_keyed("a", 14, "b", 2, "a", 25, "b", 8, "a", 30, "b", 31)]

    return {
        name: _runs(e, items(), _collect(e, windower, wait=5), 2, epoch_interval=e.tiny_epoch)
        for name, windower in (("tumbling", e.tumbling()), ("session", e.session(5)),
                               ("sliding", e.sliding(10, 5)))
    }


def run_all(engine_name: str) -> Dict[str, Any]:
    """Every scenario's result on the named engine."""
    engine = Engine.load(engine_name)
    return {name: fn(engine) for name, fn in SCENARIOS.items()}


if __name__ == "__main__":
    print(repr(run_all(sys.argv[1])))
