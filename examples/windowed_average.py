"""Average of sensor readings per 10-minute window of event time.

Run it with ``fastflow run examples/windowed_average.py``. Each reading
carries the time it was taken; readings arrive out of order, and the clock
waits 5 minutes past the newest reading before it closes a window. A reading
for a window already closed is late: it is printed apart and left out.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Tuple

import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.operators.windowing import EventClock, TumblingWindower, fold_window
from fastflow.testing import TestingSource

START = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
LENGTH = timedelta(minutes=10)


@dataclass(frozen=True)
class Reading:
    sensor: str
    at: datetime
    celsius: float


def reading(sensor: str, minute: int, celsius: float) -> Reading:
    return Reading(sensor, START + timedelta(minutes=minute), celsius)


READINGS = [
    reading("hall", 1, 20.0),
    reading("attic", 2, 25.0),
    reading("hall", 7, 21.0),
    reading("hall", 4, 21.5),  # out of order, but within the 5 minutes waited
    reading("attic", 12, 27.0),
    reading("hall", 16, 22.0),
    reading("hall", 3, 19.0),  # late: its window closed when 16 arrived
    reading("attic", 14, 26.0),
    reading("hall", 31, 23.0),
]


def add(total: Tuple[float, int], r: Reading) -> Tuple[float, int]:
    return total[0] + r.celsius, total[1] + 1


def merge(a: Tuple[float, int], b: Tuple[float, int]) -> Tuple[float, int]:
    return a[0] + b[0], a[1] + b[1]


def show_average(item: Tuple[str, Tuple[int, Tuple[float, int]]]) -> str:
    sensor, (window_id, (total, count)) = item
    opens = START + window_id * LENGTH
    closes = opens + LENGTH
    return f"{sensor} {opens:%H:%M}-{closes:%H:%M}: mean {total / count:.2f} C (n={count})"


def show_late(item: Tuple[str, Tuple[int, Any]]) -> str:
    sensor, (_window_id, r) = item
    return f"{sensor}: late reading from {r.at:%H:%M} dropped"


flow = Dataflow("windowed_average")
readings = op.input("read", flow, TestingSource(READINGS))
keyed = op.key_on("by_sensor", readings, lambda r: r.sensor)
clock = EventClock(lambda r: r.at, wait_for_system_duration=timedelta(minutes=5))
windows = TumblingWindower(length=LENGTH, align_to=START)
sums = fold_window("average", keyed, clock, windows, lambda: (0.0, 0), add, merge)
op.output("print", op.map("show", sums.down, show_average), StdOutSink())
op.output("print_late", op.map("show_late", sums.late, show_late), StdOutSink())
