"""TCP port numbers from command lines, config files and inventories: one check, one message."""

from __future__ import annotations

MAX_PORT = 65535


def tcp_port(value: object, *, allow_zero: bool = False) -> int:
    """``value`` (an int or its decimal text) as a TCP port: 1..65535, or 0..65535 with ``allow_zero``
    (0: any free port). Otherwise ValueError ``must be a TCP port 1..65535 (got '99999')``."""
    low = 0 if allow_zero else 1
    port = -1
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        port = int(value.strip())
    if not low <= port <= MAX_PORT:
        raise ValueError(f"must be a TCP port {low}..{MAX_PORT} (got {value!r})")
    return port
