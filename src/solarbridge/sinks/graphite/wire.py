"""Graphite (Carbon) wire formats, sans-IO: plaintext lines, pickle frames, metric-path sanitising.

Used by the daemon's ``graphite`` sink and by the ``se2graphite``/``pickle2graphite`` commands.
No sockets, clocks or logging here: points in, bytes out (and back, for tests and tools).

Plaintext protocol (Carbon's line receiver, usually port 2003)::

    <path> <value> <timestamp>\\n

Pickle protocol (usually port 2004): a 4-byte big-endian length, then a pickled list of
``(path, (timestamp, value))`` tuples. Carbon refuses frames longer than its
``PICKLE_RECEIVER_MAX_LENGTH`` (1 MiB by default) by dropping the connection, so
:func:`encode_pickle` splits large batches into several frames.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: a Graphite datapoint: metric path, Unix timestamp (seconds), value
Point = tuple[str, float, float]

PICKLE_HEADER = struct.Struct("!L")
#: Carbon's default PICKLE_RECEIVER_MAX_LENGTH; a longer frame makes Carbon drop the connection
CARBON_MAX_PICKLE_FRAME = 2**20
#: Carbon's line receiver (Twisted LineOnlyReceiver) drops the connection on longer lines
CARBON_MAX_LINE = 16384
#: pickle protocol 2 is understood by every Carbon release (Python 2 and 3)
PICKLE_PROTOCOL = 2

# Characters kept in a path component. Everything else becomes "_": whitespace would split a
# plaintext line, "/" and ".." would escape Carbon's whisper directory tree, "." is the separator.
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-+:#@%=~]")


class WireError(ValueError):
    """A value that cannot be put on the wire (the message says why)."""


def sanitize_component(text: str) -> str:
    """One path component: unsafe characters (including ".") replaced by "_"; never empty."""
    out = _UNSAFE.sub("_", text)
    return out or "_"


def sanitize_path(path: str) -> str:
    """A dotted path made safe for Carbon: each component sanitised, empty components dropped."""
    parts = [_UNSAFE.sub("_", p) for p in path.split(".")]
    return ".".join(p for p in parts if p)


def render_template(template: str, fields: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders with sanitised components, then sanitise the whole path.

    Each substituted value is one component: dots inside a device id do not add levels.
    Unknown placeholders raise :class:`WireError` naming them.
    """
    try:
        filled = template.format_map({k: sanitize_component(str(v)) for k, v in fields.items()})
    except KeyError as e:
        raise WireError(f"unknown placeholder {{{e.args[0]}}} in template {template!r} "
                        f"(allowed: {', '.join('{' + k + '}' for k in sorted(fields))})") from None
    except (ValueError, IndexError) as e:
        raise WireError(f"bad template {template!r}: {e}") from None
    return sanitize_path(filled)


def numeric(value: object) -> float | int | None:
    """The value as a finite number for Graphite, or None.

    Booleans become 1/0; ints stay ints (so they print without ".0"); NaN and
    infinities are not sent (Carbon drops NaN and whisper cannot graph infinity).
    Strings are never numbers here: callers decide whether a string is a metric.
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def format_timestamp(ts: float) -> str:
    """Whole seconds print as integers (the usual Graphite form); fractions keep their digits."""
    if float(ts).is_integer():
        return str(int(ts))
    return repr(float(ts))


def encode_text(points: Iterable[Point]) -> bytes:
    """Plaintext-protocol lines for ``points`` (paths must already be sanitised)."""
    return "".join(f"{path} {value!r} {format_timestamp(ts)}\n" for path, ts, value in points).encode()


def encode_pickle(points: Sequence[Point], *, max_frame: int = CARBON_MAX_PICKLE_FRAME) -> list[bytes]:
    """Pickle-protocol frames for ``points``: one frame if it fits in ``max_frame``, else several.

    An empty batch still gives one frame holding an empty list.
    """
    return [frame for frame, _ in pickle_frames(points, max_frame=max_frame)]


def pickle_frames(points: Sequence[Point], *, max_frame: int = CARBON_MAX_PICKLE_FRAME) -> list[tuple[bytes, int]]:
    """Like :func:`encode_pickle`, with the number of points in each frame."""
    payload = pickle.dumps([(p, (ts, v)) for p, ts, v in points], protocol=PICKLE_PROTOCOL)
    if len(payload) + PICKLE_HEADER.size <= max_frame:
        return [(PICKLE_HEADER.pack(len(payload)) + payload, len(points))]
    if len(points) <= 1:
        raise WireError(f"one datapoint is larger than the pickle frame limit ({max_frame} bytes)")
    half = len(points) // 2
    return pickle_frames(points[:half], max_frame=max_frame) + pickle_frames(points[half:], max_frame=max_frame)


# ----------------------------------------------------------------------------- decoding (tests, tools)


@dataclass
class Decoded:
    points: list[Point]
    rest: bytes
    errors: int = 0


def decode_text(data: bytes, *, final: bool = False) -> Decoded:
    """Parse complete plaintext lines; an incomplete last line is returned as ``rest``.

    Lines that are not ``path value timestamp`` with numeric value and timestamp are
    counted in ``errors`` and skipped, as Carbon does. ``final`` treats a trailing
    partial line as complete.
    """
    points: list[Point] = []
    errors = 0
    lines = data.split(b"\n")
    rest = lines.pop()
    if final and rest:
        lines.append(rest)
        rest = b""
    for raw in lines:
        if len(raw) > CARBON_MAX_LINE:
            errors += 1
            continue
        try:
            path, value, ts = raw.decode("utf-8").split()
            points.append((path, float(ts), float(value)))
        except (UnicodeDecodeError, ValueError):
            errors += 1
    if len(rest) > CARBON_MAX_LINE:
        errors += 1
        rest = b""
    return Decoded(points, rest, errors)


class _SafeUnpickler(pickle.Unpickler):
    """Only plain data: a pickle that names any class or function is refused (as Carbon does)."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _loads(payload: bytes) -> object:
    return _SafeUnpickler(io.BytesIO(payload)).load()


def decode_pickle(data: bytes, *, max_frame: int = CARBON_MAX_PICKLE_FRAME) -> Decoded:
    """Parse complete pickle frames; an incomplete frame is returned as ``rest``.

    A frame that does not unpickle to a list of ``(path, (timestamp, value))`` counts
    one error and is skipped; malformed items inside a good frame count one error each.
    A length above ``max_frame`` cannot be resynchronised: it counts one error and the
    whole buffer is discarded (Carbon closes the connection in that case).
    """
    points: list[Point] = []
    errors = 0
    pos = 0
    n = len(data)
    while n - pos >= PICKLE_HEADER.size:
        (length,) = PICKLE_HEADER.unpack_from(data, pos)
        if length > max_frame:
            return Decoded(points, b"", errors + 1)
        if n - pos - PICKLE_HEADER.size < length:
            break
        payload = data[pos + PICKLE_HEADER.size: pos + PICKLE_HEADER.size + length]
        pos += PICKLE_HEADER.size + length
        try:
            items = _loads(payload)
        except Exception:  # noqa: BLE001 - pickle raises many types on garbage
            errors += 1
            continue
        if not isinstance(items, list | tuple):
            errors += 1
            continue
        for item in items:
            try:
                path, (ts, value) = item
                if isinstance(path, bytes):
                    path = path.decode("utf-8")
                if not isinstance(path, str):
                    raise TypeError("path is not text")
                points.append((path, float(ts), float(value)))
            except (TypeError, ValueError, UnicodeDecodeError, OverflowError):
                errors += 1
    return Decoded(points, data[pos:], errors)
