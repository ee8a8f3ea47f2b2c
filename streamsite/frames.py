"""The one JSON encoding of every frame Streamsite sends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def encode(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


def error_frame(code: str, message: str) -> str:
    return encode({"type": "error", "error": code, "message": message})


def websocket_frame(text: str) -> bytes:
    """The complete wire form of a server-to-client text frame (RFC 6455, unmasked, FIN).

    It is the same bytes for every uncompressed connection, so a broadcast builds it
    once per process and writes it to each socket as is (see streamsite/server.py).
    """
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65536:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload
