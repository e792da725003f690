from collections.abc import Callable
from typing import Any

def read_messages(
    messages: list[Any], start: int, cls: type, topic: str, partition: int, out: list[Any]
) -> int: ...
def produce_plain(
    items: list[Any], start: int, cls: type, topic: str | None, produce: Callable[..., None]
) -> int: ...
