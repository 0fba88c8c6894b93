"""TCP reassembly of one direction: order, retransmission, overlap, holes, mid-stream joins, restarts."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from solarbridge.capture.packets import FIN, RST, SYN, PacketStats
from solarbridge.capture.tcp import StreamReassembler


def _pieces(data: bytes, seed: int, dup: float = 0.3) -> list[tuple[int, bytes]]:
    """A covering segmentation of ``data`` plus overlapping re-sends, shuffled."""
    rng = random.Random(seed)
    segs, pos = [], 0
    while pos < len(data):
        k = rng.randint(1, 300)
        segs.append((pos, data[pos:pos + k]))
        pos += k
    for _ in range(int(len(segs) * dup)):
        a = rng.randrange(len(data))
        segs.append((a, data[a:a + rng.randint(1, 400)]))
    rng.shuffle(segs)
    return segs


@given(data=st.binary(min_size=1, max_size=3000), seed=st.integers(0, 2**32 - 1), isn=st.integers(0, 2**32 - 1))
def test_any_order_duplicates_overlaps_and_wrap_restore_the_stream(data: bytes, seed: int, isn: int) -> None:
    out: list[bytes] = []
    st_ = PacketStats()
    r = StreamReassembler(out.append, st_)
    r.segment(isn, SYN, b"")
    for off, piece in _pieces(data, seed):
        r.segment((isn + 1 + off) & 0xFFFFFFFF, 0, piece)
    r.segment((isn + 1 + len(data)) & 0xFFFFFFFF, FIN, b"")
    assert b"".join(out) == data and r.closed and r.waiting == 0
    assert "gaps" not in st_


def test_pieces_keep_segment_boundaries_and_count_overlap_bytes() -> None:
    out: list[bytes] = []
    st_ = PacketStats()
    r = StreamReassembler(out.append, st_)
    r.segment(0, SYN, b"")
    r.segment(11, 0, b"KLMNO")  # ahead: waits
    r.segment(1, 0, b"ABCDE")
    r.segment(1, 0, b"ABCDE")  # a retransmission
    r.segment(4, 0, b"DEFGHIJ")  # overlaps 2 bytes
    assert out == [b"ABCDE", b"FGHIJ", b"KLMNO"]
    assert (st_["retransmitted_segments"], st_["overlap_bytes"], st_["out_of_order_segments"]) == (1, 2, 1)


def test_pending_limit_gives_up_a_hole_without_waiting_for_the_end() -> None:
    delivered: list[bytes] = []
    r = StreamReassembler(delivered.append, PacketStats(), max_pending=1000)
    r.segment(100, SYN, b"")
    r.segment(101, 0, b"a" * 10)
    for k in range(3):  # bytes 111..120 never arrive
        r.segment(121 + 300 * k, 0, b"b" * 300)
    assert b"".join(delivered) == b"a" * 10  # 900 bytes wait behind the hole
    r.segment(121 + 900, 0, b"c" * 300)  # 1200 pending > 1000: the hole is given up
    assert b"".join(delivered) == b"a" * 10 + b"b" * 900 + b"c" * 300
    assert r.stats["gap_bytes"] == 10
    r.segment(121 + 1200, 0, b"d")
    assert delivered[-1] == b"d"




@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 0x3F), st.binary(max_size=200)), max_size=60))
def test_fuzz_reassembler_with_arbitrary_segments_never_fails(segs: list[tuple[int, int, bytes]]) -> None:
    out: list[bytes] = []
    r = StreamReassembler(out.append, PacketStats(), max_pending=2000)
    for seq, flags, payload in segs:
        r.segment(seq, flags, payload)
    r.flush()
    assert sum(map(len, out)) <= sum(len(p) for _s, _f, p in segs)




def test_mid_stream_join_waits_for_a_message_start_and_keeps_what_follows_it() -> None:
    out: list[bytes] = []
    st_ = PacketStats()
    r = StreamReassembler(out.append, st_, start_byte=0xA5)
    r.segment(1000, 0, b"tail of an earlier message")  # before any message start: waits
    r.segment(1039, 0, b"more after the start")  # after the start, seen first (reordered)
    assert out == [] and r.waiting > 0
    r.segment(1026, 0, b"\xa5 start of 14")  # 13 bytes: 1026..1038
    assert out == [b"\xa5 start of 14", b"more after the start"]
    assert st_["retransmitted_segments"] == 1  # the bytes before the anchor are dropped
    # a flow that never shows a message start: a small window only, then dropped and counted
    r2 = StreamReassembler(out.append, st_, max_pending=400, start_byte=0xA5)
    for i in range(10):
        r2.segment(i * 60, 0, b"x" * 60)
    assert r2.waiting <= 100 and st_["skipped_bytes"] >= 500


def test_gap_and_restart_callbacks() -> None:
    events: list[object] = []
    r = StreamReassembler(events.append, PacketStats(), on_gap=lambda: events.append("gap"),
                          on_restart=lambda: events.append("restart"))
    r.segment(0, SYN, b"")
    r.segment(1, 0, b"one")
    r.segment(10, 0, b"two")  # 4..9 missing
    r.skip_gap()  # the caller's timeout
    assert events == [b"one", "gap", b"two"]
    r.segment(5000, SYN, b"")  # the same addresses, a new connection
    r.segment(5001, 0, b"three")
    assert events[3:] == ["restart", b"three"]
    r.segment(5006, RST, b"")
    assert r.closed


def test_snaplen_cut_segment_is_a_gap() -> None:
    out: list[bytes] = []
    st_ = PacketStats()
    r = StreamReassembler(out.append, st_)
    r.segment(0, SYN, b"")
    r.segment(1, 0, b"abc", missing=7)
    r.segment(11, 0, b"next")
    assert out == [b"abc", b"next"] and st_["gap_bytes"] == 7
