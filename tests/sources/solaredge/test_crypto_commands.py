from __future__ import annotations

import os
import random
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from solarbridge.sources.solaredge import crypto
from solarbridge.sources.solaredge.commands import CommandError, next_seq, parse_commands
from solarbridge.sources.solaredge.framing import Frame, decode, encode
from solarbridge.sources.solaredge.session import Monitor, Output, Received, Send
from solarbridge.sources.solaredge.simulator import Endpoint
from support.solaredge import DATA


def _reference_decrypt(key: bytes, m0503: bytes, payload: bytes) -> bytes:
    """The scheme as the fact sheet words it, byte by byte (independent of crypto.py)."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    enkey = ecb.update(m0503[:16])
    skey = bytes(enkey[i] ^ m0503[16 + i] for i in range(16))
    aes = Cipher(algorithms.AES(skey), modes.ECB()).encryptor()
    buf = bytearray(payload)
    counter = bytearray(buf[:16])
    ks = b""
    for pos in range(16, len(buf)):
        if pos % 16 == 0:
            ks = aes.update(bytes(counter))
            for i in range(15, -1, -1):
                counter[i] = (counter[i] + 1) & 0xFF
                if counter[i]:
                    break
        buf[pos] ^= ks[pos % 16]
    for i in range(len(buf) - 22):
        buf[22 + i] ^= buf[18 + (i & 3)]
    return bytes(buf[22:])


def test_key_file_and_params() -> None:
    key = crypto.read_key_file(DATA / "7f104920.key")
    assert key.hex() == "e1992523f4ddbb47d5336f6f177e3278"
    values = struct.unpack("<4L", key)
    assert crypto.key_from_params(values) == key
    with pytest.raises(ValueError):
        crypto.parse_key("abc")


@pytest.mark.parametrize("size", [0, 5, 40, 300])
def test_encrypt_matches_reference_decrypt(size: int) -> None:
    key = crypto.read_key_file(DATA / "7f104920.key")
    rng = random.Random(size)
    m0503 = bytes(rng.randrange(256) for _ in range(34))
    c = crypto.SessionCipher(key, m0503, random=lambda n: bytes(rng.randrange(256) for _ in range(n)))
    frame = encode(Frame(9, 0x7F104920, 0xFFFFFFFE, 0x0500, bytes(rng.randrange(256) for _ in range(size))))
    seq0 = c.encrypt_seq
    wrapper_seq, payload = c.encrypt(frame)
    assert wrapper_seq == (seq0 + 1000) & 0xFFFF
    assert _reference_decrypt(key, m0503, payload) == frame
    assert crypto.SessionCipher(key, m0503).decrypt(payload) == ((seq0 + 1) & 0xFFFF, frame)


def test_wrong_key_is_detected() -> None:
    key = crypto.read_key_file(DATA / "7f104920.key")
    m0503 = os.urandom(34)
    _, payload = crypto.SessionCipher(key, m0503).encrypt(encode(Frame(1, 2, 3, 0x500, b"x" * 30)))
    with pytest.raises(crypto.DecryptError):
        crypto.SessionCipher(bytes(16), m0503).decrypt(payload)


def test_monitor_encrypted_session_round_trip() -> None:
    """Inverter side (simulator Endpoint) and server side (Monitor) agree on everything."""
    key = crypto.read_key_file(DATA / "7f104920.key")
    inv = Endpoint(0x7F104920, key=key, rng=random.Random(3))
    mon = Monitor(reply=True, key=key, clock=lambda: 1_600_000_000.0)
    acts = mon.receive(inv.key_exchange())
    ack = [a for a in acts if isinstance(a, Send)]
    assert len(ack) == 1 and decode(ack[0].data).function == 0x003D  # the ACK already goes encrypted
    assert [f.function for f in inv.receive(ack[0].data)] == [0x0080]
    post = Frame(77, 0x7F104920, 0xFFFFFFFE, 0x0500, b"")
    from solarbridge.sources.solaredge.simulator import make_site

    post = Frame(77, 0x7F104920, 0xFFFFFFFE, 0x0500, make_site(1, 2, 0)[0].telemetry(1_600_000_000))
    acts = mon.receive(inv.frame(post))
    rec = [a for a in acts if isinstance(a, Received)]
    assert rec and rec[0].encrypted and rec[0].frame == post
    assert any(isinstance(a, Output) and "7F104920" in a.obj["inverters"] for a in acts)
    replies = [f for a in acts if isinstance(a, Send) for f in inv.receive(a.data)]
    assert [(f.function, f.seq, f.src, f.dst) for f in replies] == [(0x0080, 77, 0xFFFFFFFE, 0x7F104920)]
    # a GMT request gets the clock
    acts = mon.receive(inv.frame(Frame(78, 0x7F104920, 0xFFFFFFFE, 0x0501)))
    gmt = [f for a in acts if isinstance(a, Send) for f in inv.receive(a.data)]
    assert gmt[0].function == 0x0580 and struct.unpack("<L", gmt[0].payload[:4])[0] == 1_600_000_000


def test_encrypted_without_key_is_dropped() -> None:
    key = crypto.read_key_file(DATA / "7f104920.key")
    inv = Endpoint(1, key=key)
    mon = Monitor(reply=True)
    mon.receive(inv.key_exchange())
    acts = mon.receive(inv.frame(Frame(1, 1, 2, 0x0500, b"")))
    assert not [a for a in acts if isinstance(a, Received)]
    assert mon.drops["encrypted_without_key"] == 1


def test_command_strings() -> None:
    cmds = parse_commands("12,H239/11,H329,L1/33/35,B1,b7f,h7fff")
    assert [(c.function, c.payload) for c in cmds] == [
        (0x12, b"\x39\x02"), (0x11, b"\x29\x03\x01\x00\x00\x00"), (0x33, b""), (0x35, b"\x01\x7f\xff\x7f")]
    for bad in ("", "12,X1", "zz", "12,H", "12,B100", "12,b80", "10000", "35,hFFFF"):
        with pytest.raises(CommandError):
            parse_commands(bad)


def test_sequence_file(tmp_path) -> None:
    assert next_seq(tmp_path) == 1
    assert (tmp_path / "seseq.txt").read_text() == "1\n"
    assert next_seq(tmp_path) == 2
    (tmp_path / "seseq.txt").write_text("65535\n")
    assert next_seq(tmp_path) == 1
    (tmp_path / "seseq.txt").unlink()
    (tmp_path / "seseq.dat").write_text("41\n")  # the README's name is read too
    assert next_seq(tmp_path) == 42
    (tmp_path / "seseq.txt").write_text("garbage")
    assert next_seq(tmp_path) == 1
