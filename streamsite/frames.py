"""The one JSON encoding of every frame Streamsite sends."""

from __future__ import annotations

import json
from typing import Any


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


def error_frame(code: str, message: str) -> str:
    return encode({"type": "error", "error": code, "message": message})
