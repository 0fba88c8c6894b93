"""The legacy encryption of older inverter firmware (AES-128, a CTR-like scheme).

- Key: 16 bytes = inverter parameters 0x0239..0x023c, each a little-endian u32; key files hold it
  as 32 hex characters.
- 0x0503 (inverter -> server, 34 bytes): session key = AES_ECB(K, p[0:16]) XOR p[16:32].
- 0x003d payload: 16-byte counter in clear, then AES-CTR (big-endian 128-bit counter increment)
  over the rest; after that, bytes 22.. are XORed with the 4-byte mask at 18..21, bytes 16..17 are
  a sequence number, and bytes 22.. are a complete frame starting with the magic.

Pure functions plus one small stateful :class:`SessionCipher`; randomness is injectable.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

from .framing import MAGIC

KEY_PARAMS = (0x0239, 0x023A, 0x023B, 0x023C)


class KeyError_(ValueError):
    """A key file or value that is not 16 bytes of hex."""


def key_from_params(values: list[int] | tuple[int, ...]) -> bytes:
    """The 16-byte key from the u32 values of parameters 0x0239..0x023c (in that order)."""
    if len(values) != 4:
        raise KeyError_(f"the key needs the 4 values of parameters 0239..023c, got {len(values)}")
    return b"".join(struct.pack("<L", v & 0xFFFFFFFF) for v in values)


def parse_key(text: str) -> bytes:
    """A key as written in key files: 32 hex characters (surrounding whitespace ignored)."""
    t = text.strip()
    try:
        key = bytes.fromhex(t)
    except ValueError:
        key = b""
    if len(key) != 16:
        raise KeyError_(f"a key is 32 hex characters (16 bytes), got {t[:40]!r}")
    return key


def read_key_file(path: str | Path) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as e:
        raise KeyError_(f"cannot read key file {path}: {e.strerror}") from None
    return parse_key(text)


def _ecb(key: bytes) -> Callable[[bytes], bytes]:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # lazy: start-up time

    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update


def session_key(key: bytes, msg0503: bytes) -> bytes:
    if len(msg0503) < 32:
        raise ValueError(f"a 0x0503 payload has 34 bytes, got {len(msg0503)}")
    enkey = _ecb(key)(bytes(msg0503[:16]))
    return bytes(a ^ b for a, b in zip(enkey, msg0503[16:32], strict=True))


def _ctr(skey: bytes, buf: bytes) -> bytes:
    """XOR bytes 16.. with the keystream whose first counter block is buf[0:16]."""
    if len(buf) <= 16:
        return bytes(buf)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    # AES-CTR in `cryptography` increments the full 128-bit block big-endian, as the protocol does.
    ctr = Cipher(algorithms.AES(skey), modes.CTR(bytes(buf[:16]))).encryptor()
    return bytes(buf[:16]) + ctr.update(bytes(buf[16:]))


def _mask(buf: bytearray) -> None:
    m = buf[18:22]
    body = buf[22:]
    reps = (len(body) + 3) // 4
    mask = (bytes(m) * reps)[:len(body)]
    buf[22:] = (int.from_bytes(body, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(body), "big")


class DecryptError(ValueError):
    pass


class SessionCipher:
    """One session key: decrypt 0x003d payloads, encrypt frames into 0x003d payloads."""

    def __init__(self, key: bytes, msg0503: bytes, *, random: Callable[[int], bytes] = os.urandom,
                 encrypt_seq: int | None = None) -> None:
        self.skey = session_key(key, msg0503)
        self._random = random
        self.encrypt_seq = (int.from_bytes(random(2), "little") if encrypt_seq is None else encrypt_seq) & 0xFFFF

    def decrypt(self, payload: bytes) -> tuple[int, bytes]:
        """(inner sequence, plaintext frame starting with the magic); DecryptError if the key is wrong."""
        if len(payload) < 22 + len(MAGIC):
            raise DecryptError(f"encrypted payload of {len(payload)} bytes is too short")
        d = bytearray(_ctr(self.skey, payload))
        _mask(d)
        plain = bytes(d[22:])
        if not plain.startswith(MAGIC):
            raise DecryptError("decrypted data does not start with the magic (wrong key?)")
        return d[16] | d[17] << 8, plain

    def encrypt(self, frame_bytes: bytes) -> tuple[int, bytes]:
        """(wrapper sequence, 0x003d payload) for a complete frame (magic included)."""
        wrapper_seq = (self.encrypt_seq + 1000) & 0xFFFF
        self.encrypt_seq = (self.encrypt_seq + 1) & 0xFFFF
        buf = bytearray(self._random(16) + struct.pack("<H", self.encrypt_seq) + self._random(4) + frame_bytes)
        _mask(buf)
        return wrapper_seq, _ctr(self.skey, bytes(buf))
