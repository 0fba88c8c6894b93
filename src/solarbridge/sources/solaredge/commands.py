"""``-c`` command strings and semonitor's sequence file.

``-c "12,H239/11,H329,L1"``: commands separated by ``/``, fields by ``,``; the first field is the
function (hex), each parameter a type letter and a hex value: ``b``/``B`` 1 byte, ``h``/``H`` 2 bytes,
``l``/``L`` 4 bytes (lower case signed), packed little-endian in order.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ...util.atomic import atomic_write

SEQ_FILE = "seseq.txt"
#: the name the original README uses; read when seseq.txt does not exist
SEQ_FILE_ALT = "seseq.dat"

_COMMAND_RE = re.compile(r"^[0-9a-fA-F]+(,[bhlBHL][0-9a-fA-F]+)*$")
_RANGES = {"b": (-0x80, 0x7F), "B": (0, 0xFF), "h": (-0x8000, 0x7FFF), "H": (0, 0xFFFF),
           "l": (-0x80000000, 0x7FFFFFFF), "L": (0, 0xFFFFFFFF)}


class CommandError(ValueError):
    pass


@dataclass(slots=True, frozen=True)
class Command:
    function: int
    payload: bytes
    text: str


def parse_commands(text: str) -> list[Command]:
    out = []
    for part in text.split("/"):
        if not _COMMAND_RE.match(part):
            raise CommandError(f"Invalid command: {part} (expected FUNC[,<b|h|l|B|H|L>HEX]..., e.g. 12,H239)")
        fields = part.split(",")
        function = int(fields[0], 16)
        if function > 0xFFFF:
            raise CommandError(f"Invalid command: {part}: function {fields[0]} is above ffff")
        payload = b""
        for f in fields[1:]:
            letter, value = f[0], int(f[1:], 16)
            lo, hi = _RANGES[letter]
            if not lo <= value <= hi:
                raise CommandError(f"Invalid command: {part}: parameter {f} out of range for type {letter} "
                                   f"({lo:#x}..{hi:#x})")
            payload += struct.pack("<" + letter, value)
        out.append(Command(function, payload, part))
    return out


def next_seq(directory: str | Path = ".") -> int:
    """Read the sequence file, add one (65535 wraps to 1, missing or unreadable -> 1), write it back."""
    d = Path(directory)
    path = d / SEQ_FILE
    seq = 1
    source = path if path.exists() else d / SEQ_FILE_ALT
    try:
        seq = int(source.read_text().strip()) + 1
    except (OSError, ValueError):
        seq = 1
    if not 1 <= seq <= 65535:
        seq = 1
    atomic_write(path, f"{seq}\n".encode())
    return seq
