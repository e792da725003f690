from typing import Any, Optional, Union

FORMAT_VERSION: int

class UnencodableError(TypeError):
    type_name: str
    detail: Optional[str]
    container: Optional[str]

def encode(obj: Any) -> bytes: ...
def decode(data: Union[bytes, bytearray, memoryview, str]) -> Any: ...
