"""semonitor's output lines: one ``json.dumps(obj, sort_keys=True)`` per message, latin-1, ``\\n``.

NaN floats are written as the bare token ``NaN`` (Python's json default), as semonitor does.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # (not typing's: semonitor starts without importing typing)
if TYPE_CHECKING:
    from typing import Any

_encoder = json.JSONEncoder(sort_keys=True)


def dumps(obj: Any) -> str:
    return _encoder.encode(obj)


def line(obj: Any) -> bytes:
    """One output line, encoded as semonitor writes it."""
    return _encoder.encode(obj).encode("latin-1") + b"\n"


def command_line(command: int, response: int, sequence: int, data: Any) -> bytes:
    """The ``-c`` mode line."""
    return line({"command": command, "response": response, "sequence": sequence, "data": data})
