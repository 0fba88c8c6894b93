"""SolarEdge conversations built with dpkt for the seextract and `semonitor --pcap` tests: an inverter and
its monitoring server exchanging recorded or random frames (packet builders are in tests/capture/builders.py)."""

from __future__ import annotations

import io
import random

import dpkt

from capture.builders import INV, SRV, pcap_bytes, tcp
from solarbridge.sources.solaredge import extract as ex
from solarbridge.sources.solaredge.framing import Frame, encode
from support.paths import DATA as DATA_ROOT

DATA = DATA_ROOT / "solaredge-tools"

INV_ID = 0x7F104920
MASTER = 0xFFFFFFFE


# ---------------------------------------------------------------------------------------------
# capture building (dpkt)


def recorded_frames() -> dict[str, bytes]:
    out = {}
    for line in (DATA / "frames.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, hexs = line.split()
            out[name] = bytes.fromhex(hexs)
    return out


class Conversation:
    """An inverter<->server TCP connection as a list of captured frames, with the true byte streams."""

    def __init__(self, inv: str = INV, srv: str = SRV, sport: int = 40123, dport: int = 22222,
                 isn_c: int = 1000, isn_s: int = 5000, syn: bool = True) -> None:
        self.inv, self.srv, self.sport, self.dport = inv, srv, sport, dport
        self.c, self.s = isn_c + 1, isn_s + 1
        self.to_server = bytearray()
        self.from_server = bytearray()
        self.packets: list[bytes] = []
        if syn:
            self.packets += [tcp(inv, srv, sport, dport, isn_c, dpkt.tcp.TH_SYN),
                             tcp(srv, inv, dport, sport, isn_s, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK),
                             tcp(inv, srv, sport, dport, self.c)]

    def send(self, data: bytes, *, from_server: bool = False, pieces: int = 1) -> list[bytes]:
        """Segments for ``data`` (split in ``pieces``), appended in order; returns them too."""
        cuts = sorted(random.sample(range(1, len(data)), pieces - 1)) if pieces > 1 and len(data) > pieces else []
        parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        segs = []
        for p in parts:
            if from_server:
                segs.append(tcp(self.srv, self.inv, self.dport, self.sport, self.s, data=p))
                self.s += len(p)
            else:
                segs.append(tcp(self.inv, self.srv, self.sport, self.dport, self.c, data=p))
                self.c += len(p)
        (self.from_server if from_server else self.to_server).extend(data)
        self.packets += segs
        return segs

    def close(self) -> None:
        F = dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
        self.packets += [tcp(self.inv, self.srv, self.sport, self.dport, self.c, F),
                         tcp(self.srv, self.inv, self.dport, self.sport, self.s, F)]


def telemetry(i: int, size: int = 300) -> bytes:
    return encode(Frame(i, INV_ID, MASTER, 0x0500, random.Random(i).randbytes(size)))


def ack(i: int) -> bytes:
    return encode(Frame(i, MASTER, INV_ID, 0x0080))


def extract(packets: list[bytes], server: str | None = SRV, linktype: int = 1, **kw: object) -> tuple[bytes, dict]:
    e = ex.make_extractor(server, resolver=_offline, **kw)  # type: ignore[arg-type]
    out = b"".join(ex.iter_streams(io.BytesIO(pcap_bytes(packets, linktype)), extractor=e))
    return out, dict(e.stats)


def _offline(name: str) -> list[str]:
    raise OSError(-2, "Name or service not known")


# ---------------------------------------------------------------------------------------------
# reassembly and output


def other_traffic() -> list[bytes]:
    https = Conversation(srv="93.184.216.34", dport=443, sport=50000)
    https.send(telemetry(99) + b"looks like SolarEdge but is not")  # magic inside unrelated traffic
    return https.packets
