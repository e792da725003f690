from typing import Any, Optional, Union

FORMAT_VERSION: int

class UnencodableError(TypeError):
    type_name: str
    detail: Optional[str]
    container: Optional[str]
    key: Optional[str]
    """The state key, when raised by ``encode_changes``."""

def encode(obj: Any) -> bytes: ...
def decode(data: Union[bytes, bytearray, memoryview, str]) -> Any: ...
def encode_changes(
    values: dict[str, Any], changed: dict[str, bool], chunk_keys: int
) -> list[tuple[int, bytes]]: ...
def decode_changes(data: bytes) -> tuple[dict[str, Any], list[str]]: ...
