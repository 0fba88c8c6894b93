"""``sekey``: the inverter's encryption key from semonitor's answers to parameters 0x0239..0x023c.

The key of older (encrypting) firmware is four parameters read over RS232 with::

    semonitor -c 12,H239/12,H23a/12,H23b/12,H23c -s <inverter id> -t 2 /dev/ttyUSB0 -o key.json

which writes one JSON line per command, ``{"command": 18, "response": 144, "sequence": n,
"data": {"type": t, "value": v}}``. The answers do not name the parameter, so they are taken in
the order asked. Each value is a little-endian u32; the four make the 16-byte AES key, written as
32 lowercase hex characters without a newline (the format ``semonitor -k`` reads).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from .crypto import KEY_PARAMS, key_from_params
from .functions import NACK, PARAMS_GET_SINGLE, PARAMS_SINGLE_RESPONSE, function_name

#: the semonitor command that asks for the key parameters
KEY_COMMANDS = "/".join(f"12,H{p:x}" for p in KEY_PARAMS)


class KeyfileError(ValueError):
    """Input that does not hold the four key parameter answers (one line, for the user)."""


def values_from_lines(lines: Iterable[str]) -> list[int]:
    """The four parameter values, in order, from semonitor ``-c`` output lines.

    Blank lines and telemetry lines (objects without ``command``) are skipped; anything else that
    is not an answer carrying a u32 ``value`` is an error naming the line.
    """
    values: list[int] = []
    for lineno, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            raise KeyfileError(f"line {lineno}: not a JSON line from semonitor: {text[:60]!r}") from None
        if not isinstance(obj, dict):
            raise KeyfileError(f"line {lineno}: expected a JSON object, got {type(obj).__name__}")
        if "command" not in obj:
            continue  # a telemetry line that was written to the same file
        which = f"answer {len(values) + 1} (parameter 0x{KEY_PARAMS[min(len(values), 3)]:04x})"
        command, response = obj.get("command"), obj.get("response")
        if command is not None and command != PARAMS_GET_SINGLE:
            raise KeyfileError(f"line {lineno}: command 0x{_int(command):04x} is not a parameter read "
                               f"(0x{PARAMS_GET_SINGLE:04x}); ask with -c {KEY_COMMANDS}")
        if response is not None and response != PARAMS_SINGLE_RESPONSE:
            hint = " (the key can only be read over RS232, semonitor -t 2)" if response == NACK else ""
            raise KeyfileError(f"line {lineno}: {which}: the inverter answered 0x{_int(response):04x} "
                               f"{function_name(_int(response))} instead of a parameter value{hint}")
        data = obj.get("data")
        value = data.get("value") if isinstance(data, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise KeyfileError(f"line {lineno}: {which}: data.value must be an integer 0..4294967295, "
                               f"got {value!r}")
        values.append(value)
    if len(values) != len(KEY_PARAMS):
        raise KeyfileError(f"expected the {len(KEY_PARAMS)} answers to -c {KEY_COMMANDS}, found {len(values)}")
    return values


def _int(x: object) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else -1


def key_hex(values: list[int]) -> str:
    """The key file text: 32 lowercase hex characters, no newline."""
    return key_from_params(values).hex()


def write_key_file(path: str | os.PathLike[str], values: list[int]) -> str:
    """Write the key file atomically, readable by its owner only; returns the hex written."""
    from solarbridge.util.atomic import write_private

    text = key_hex(values)
    write_private(path, text)
    return text
