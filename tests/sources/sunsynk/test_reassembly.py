"""TCP reassembly: split, retransmitted, reordered and coalesced reports are decoded exactly once."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from solarbridge.sources.sunsynk import codec
from solarbridge.sources.sunsynk.reassembly import FIN, SYN, Reassembler
from solarbridge.sources.sunsynk.simulator import DongleState
from support.sunsynk import FRAME, dpkt_frame, fields, run_file, write_dpkt_pcap

DONGLE = ("192.168.0.202", 50586)
CLOUD = ("47.242.67.221", 51100)
OTHER = ("192.168.0.203", 40000)
REAL = FRAME[54:]


def _reports(n: int, layout: int = 292, seed: int = 3) -> list[bytes]:
    st_ = DongleState(seed=seed)
    return [st_.next_report(layout)[0] for _ in range(n)]


def test_crafted_pcap_split_retransmitted_reordered(tmp_path):
    r1, r2, r3 = REAL, *_reports(2)
    seq = 1000
    recs: list[tuple[float, bytes]] = []
    t = 1667629966.0

    def seg(off_seq: int, data: bytes, who=DONGLE, to=CLOUD) -> None:
        nonlocal t
        t += 0.001
        recs.append((t, dpkt_frame(who, to, off_seq, data)))

    recs.append((t, dpkt_frame(DONGLE, CLOUD, seq - 1, b"", flags=0x02)))  # SYN
    # report 1 split in three segments
    seg(seq, r1[:100])
    seg(seq + 100, r1[100:200])
    seg(seq + 200, r1[200:])
    seq += len(r1)
    # report 2 sent, then retransmitted whole (the original would decode it twice)
    seg(seq, r2)
    seg(seq, r2)
    seq += len(r2)
    # a second dongle's flow interleaves
    seg(5000, r2, who=OTHER)
    # report 3: second half arrives first, first part twice, then a repacketised overlap
    seg(seq + 150, r3[150:])
    seg(seq, r3[:100])
    seg(seq, r3[:100])
    seg(seq + 50, r3[50:150])
    seq += len(r3)
    recs.append((t + 1, dpkt_frame(DONGLE, CLOUD, seq, b"", flags=0x11)))  # FIN
    path = write_dpkt_pcap(tmp_path / "crafted.pcap", recs)

    readings, src = run_file(path)
    # DONGLE's flow in order; OTHER's single 292-byte report is held (it could be the head of a 302-byte one)
    # until the capture ends, since that flow never showed its layout
    assert [fields(r) for r in readings] == [codec.decode(x).values for x in (r1, r2, r3, r2)]
    st_ = src.pipeline.stats()  # type: ignore[union-attr]
    assert st_["retransmissions"] == 2 and st_["out_of_order"] == 1 and st_["overlap_bytes"] == 50


def test_pcapng_with_coalesced_reports(tmp_path):
    a, b, c = _reports(3, layout=302)
    recs = [(1.0, dpkt_frame(DONGLE, CLOUD, 10, a + b)), (2.0, dpkt_frame(DONGLE, CLOUD, 10 + 604, c))]
    readings, _ = run_file(write_dpkt_pcap(tmp_path / "c.pcapng", recs, ng=True))
    assert [fields(r) for r in readings] == [codec.decode(x).values for x in (a, b, c)]
    assert [r.extra["sunsynk"]["layout"] for r in readings] == [302, 302, 302]


def test_unknown_lengths_counted_not_decoded():
    ra = Reassembler()
    out = []
    out += ra.feed(0.0, "f", 0, 0, b"\xa5" + bytes(40))  # a heartbeat-like message
    out += ra.feed(0.1, "f", 41, 0, REAL)
    out += ra.feed(0.2, "f", 41 + 292, 0, b"\xa5" + bytes(99))
    out += ra.close()
    assert [m for _, m in out] == [REAL]
    assert ra.unknown_lengths == {41: 1, 100: 1}


def test_ambiguous_292_waits_for_302_tail():
    (r302,) = _reports(1, layout=302)
    ra = Reassembler()
    assert ra.feed(0.0, "f", 0, 0, r302[:292]) == []  # could be a whole 292-byte report: held
    # complete now, but the flow has not shown its layout yet: held until more data or the hold time
    assert ra.feed(0.05, "f", 292, 0, r302[292:]) == []
    assert [m for _, m in ra.poll(2.1)] == [r302]


def test_ambiguous_292_released_by_hold_and_next_report():
    ra = Reassembler(hold=1.0)
    assert ra.feed(0.0, "f", 0, 0, REAL) == []
    assert [m for _, m in ra.poll(1.5)] == [REAL]
    # the flow has now shown its layout: the next report goes out at once
    assert [m for _, m in ra.feed(2.0, "f", 292, 0, REAL)] == [REAL]
    rb = Reassembler()
    assert rb.feed(0.0, "g", 0, 0, REAL) == []
    # a second report releases the first, and with the layout now known goes out too
    assert [m for _, m in rb.feed(0.1, "g", 292, 0, REAL)] == [REAL, REAL]


def test_gap_never_filled_resyncs():
    a, b = _reports(2)
    ra = Reassembler(hold=1.0)
    ra.feed(0.0, "f", 0, SYN, b"")
    ra.feed(0.1, "f", 1, 0, a[:100])  # the rest of a is lost by the capture
    out = ra.feed(0.2, "f", 1 + 292, 0, b)
    out += ra.poll(2.0)
    out += ra.close()
    assert [m for _, m in out] == [b]
    assert ra.stats.gaps == 1


def test_capture_joins_mid_stream():
    a, b, c = _reports(3)
    ra = Reassembler()
    out = ra.feed(0.0, "f", 100, 0, a[120:])  # the capture started inside report a
    out += ra.feed(0.1, "f", 100 + 172, 0, b[:50])
    out += ra.feed(0.2, "f", 100 + 222, 0, b[50:])
    out += ra.feed(0.3, "f", 100 + 464, 0, c)
    out += ra.close()
    assert [m for _, m in out] == [b, c]


def test_sequence_wraparound():
    a, b = _reports(2)
    ra = Reassembler(layout=292)
    start = (1 << 32) - 100
    out = ra.feed(0.0, "f", start, 0, a[:150])
    out += ra.feed(0.1, "f", (start + 150) % (1 << 32), 0, a[150:] + b)
    assert [m for _, m in out] == [a, b]


def test_memory_is_bounded():
    ra = Reassembler(max_flows=8, max_pending=4096)
    rng = random.Random(1)
    for i in range(5000):
        ra.feed(i * 0.001, i % 50, rng.randrange(1 << 32), 0, bytes(rng.randrange(256) for _ in range(64)))
    assert len(ra.flows) <= 8
    assert all(f.stream.waiting <= 4096 + 64 and len(f.buf) <= 2000 for f in ra.flows.values())


# --------------------------------------------------------------------------- properties


def _segments(stream: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    pts = sorted({c % len(stream) for c in cuts} - {0})
    bounds = [0, *pts, len(stream)]
    return [(a, stream[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


body_no_magic = st.binary(min_size=302, max_size=302).map(lambda b: bytes(x if x != 0xA5 else 0 for x in b))


@given(layout=st.sampled_from([292, 302]), bodies=st.lists(body_no_magic, min_size=1, max_size=5),
       cuts=st.lists(st.integers(0, 10_000), max_size=20), seed=st.integers(0, 2**32 - 1),
       isn=st.integers(0, 2**32 - 1), dup=st.floats(0, 0.5))
def test_any_segmentation_order_and_duplication_gives_each_report_once(layout, bodies, cuts, seed, isn, dup):
    reports = [b"\xa5" + b[1:layout] for b in bodies]
    segs = _segments(b"".join(reports), cuts)
    rng = random.Random(seed)
    segs += [s for s in segs if rng.random() < dup]
    rng.shuffle(segs)
    ra = Reassembler(layout=layout)
    out = ra.feed(0.0, "f", isn, SYN, b"")
    for i, (off, data) in enumerate(segs):
        out += ra.feed(0.001 * (i + 1), "f", (isn + 1 + off) % (1 << 32), 0, data)
    out += ra.feed(1.0, "f", (isn + 1 + sum(map(len, reports))) % (1 << 32), FIN, b"")
    assert [m for _, m in out] == reports


@given(layout=st.sampled_from([292, 302]), n=st.integers(1, 4), seed=st.integers(0, 1000),
       cuts=st.lists(st.integers(0, 10_000), max_size=12), shuffle=st.integers(0, 2**32 - 1))
def test_auto_layout_with_simulated_reports(layout, n, seed, cuts, shuffle):
    reports = _reports(n, layout=layout, seed=seed)
    segs = _segments(b"".join(reports), cuts)
    random.Random(shuffle).shuffle(segs)
    ra = Reassembler()
    out = ra.feed(0.0, "f", 6, SYN, b"")
    for i, (off, data) in enumerate(segs):
        out += ra.feed(0.001 * i, "f", 7 + off, 0, data)
    out += ra.close()
    assert [m for _, m in out] == reports


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**32 - 1), st.integers(0, 255),
                          st.one_of(st.binary(max_size=400), st.sampled_from([REAL, REAL[:150], REAL[150:]]))),
                max_size=60))
def test_garbage_segments_never_crash(segs):
    ra = Reassembler(max_pending=2048)
    out = []
    for i, (flow, seq, flags, data) in enumerate(segs):
        out += ra.feed(i * 0.3, flow, seq, flags, data)
    out += ra.poll(1e6)
    out += ra.close()
    for _, m in out:
        assert codec.identify(m) is not None


def test_fin_overtaking_data_waits_for_it():
    a, b = _reports(2)
    ra = Reassembler(layout=292)
    out = ra.feed(0.0, "f", 0, SYN, b"")
    out += ra.feed(0.1, "f", 1, 0, a)
    out += ra.feed(0.2, "f", 1 + 292 + 292, FIN, b"")  # FIN before b (reordered)
    out += ra.feed(0.3, "f", 1 + 292, 0, b)
    out += ra.close()
    assert [m for _, m in out] == [a, b]


def test_close_resolves_several_gaps():
    a, b, c = _reports(3)
    ra = Reassembler(layout=292)
    ra.feed(0.0, "f", 0, SYN, b"")
    out = ra.feed(0.1, "f", 1 + 292 + 10, 0, b[10:])  # head of b never captured
    out += ra.feed(0.2, "f", 1 + 584 + 20, 0, c[20:])  # head of c never captured
    out += ra.feed(0.3, "f", 1 + 876, 0, a)  # a later report, after two gaps
    out += ra.close()
    assert [m for _, m in out] == [a]
    assert ra.stats.gaps >= 2
