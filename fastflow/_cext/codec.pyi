from collections.abc import Callable
from typing import Any

FORMAT_VERSION: int

class StateDecodeError(ValueError):
    key: str
    error: Exception
    def __init__(self, key: str, error: Exception) -> None: ...

class UnimportedModuleError(LookupError):
    path: str
    module_name: str
    def __init__(self, path: str, module_name: str) -> None: ...

class UnencodableError(TypeError):
    type_name: str
    detail: str | None
    container: str | None
    key: str | None
    """The state key, when raised by ``encode_changes``."""
    def __init__(
        self, type_name: str, detail: str | None = None, container: str | None = None
    ) -> None: ...

def encode(obj: Any) -> bytes: ...
def decode(
    data: bytes | bytearray | memoryview | str,
    unpickle: Callable[[bytes], Any] | None = None,
    import_modules: bool = True,
) -> Any: ...
def encode_changes(
    values: dict[str, Any], changed: dict[str, bool], chunk_keys: int
) -> list[tuple[int, bytes]]: ...
def decode_changes(
    data: bytes | bytearray | memoryview | str,
    unpickle: Callable[[bytes], Any] | None = None,
    import_modules: bool = True,
) -> tuple[dict[str, Any], list[str]]: ...
