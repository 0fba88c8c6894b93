"""TCP reassembly of one direction of one connection (sans-IO): segments in any order in, bytes out.

The bytes come out in order, one piece per segment (a segment's new bytes), so a frame cutter for a
protocol without a length header can still tell where the sender's writes ended.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from .packets import FIN, RST, SYN, PacketStats


def _signed32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - 0x100000000 if x & 0x80000000 else x


def _nothing() -> None:
    pass


class StreamReassembler:
    """One direction of a TCP connection: segments in any order in, contiguous bytes out.

    Positions are kept as unbounded integers (sequence numbers unwrapped around the current
    position), so wrap-around at 2**32 is invisible. Data already delivered wins over a
    retransmission that differs (the receiver had already consumed it). A hole that stays open
    while more than ``max_pending`` bytes wait behind it is given up (counted in ``gap_bytes``);
    so is every hole left when the stream is flushed; :meth:`skip_gap` gives up the first hole
    at once (a caller's timeout).

    Callbacks: ``deliver(bytes)`` for each in-order piece; ``on_gap()`` when bytes were lost
    before the next piece; ``on_restart()`` when a SYN with a new initial sequence number starts
    a new connection on the same addresses (after everything of the old one was delivered).

    ``start_byte``: when the capture joins a connection mid-stream (no SYN seen), the stream
    starts at the first segment whose payload begins with this byte (where the protocol's
    messages begin); segments that come before it wait (at most ``max_pending // 4`` bytes,
    then they are dropped and counted in ``skipped_bytes``). Without it the first segment seen
    starts the stream.

    Counters in ``stats``: ``retransmitted_segments``, ``overlaps`` (segments partly old) and
    ``overlap_bytes``, ``out_of_order_segments``, ``gaps`` and ``gap_bytes``, ``skipped_bytes``.
    """

    __slots__ = ("next", "isn", "fin_at", "closed", "_heap", "waiting", "_order", "max_pending",
                 "deliver", "stats", "on_gap", "on_restart", "start_byte")

    def __init__(self, deliver: Callable[[bytes], None], stats: PacketStats,
                 max_pending: int = 4 * 1024 * 1024, *, on_gap: Callable[[], None] = _nothing,
                 on_restart: Callable[[], None] = _nothing,
                 start_byte: int | None = None) -> None:
        self.deliver = deliver
        self.stats = stats
        self.max_pending = max_pending
        self.on_gap = on_gap
        self.on_restart = on_restart
        self.start_byte = start_byte
        self.next: int | None = None
        self.isn: int | None = None
        self.fin_at: int | None = None
        self.closed = False
        self._heap: list[tuple[int, int, bytes]] = []
        #: bytes held behind a hole (or, before the stream was anchored, before its start)
        self.waiting = 0
        self._order = 0

    def _abs(self, seq: int) -> int:
        if self.next is None:
            return seq
        return self.next + _signed32(seq - self.next)

    def segment(self, seq: int, flags: int, payload: bytes, missing: int = 0) -> None:
        nxt = self.next
        if nxt is not None and not (seq - nxt) & 0xFFFFFFFF and payload and not self._heap \
                and not flags & 7 and not missing and self.fin_at is None:
            # the usual segment: the next bytes, in order, nothing waiting, no SYN/FIN/RST
            self.next = nxt + len(payload)
            self.deliver(payload)
            return
        st = self.stats
        if flags & SYN:
            if seq != self.isn:
                # a new initial sequence number: a (new) connection starts here
                if self.next is not None:
                    self.flush()
                    self.on_restart()
                elif self._heap:
                    self._drop_unanchored()
                self.isn = seq
                self.next = seq + 1
                self.fin_at = None
                self.closed = False
            seq = (seq + 1) & 0xFFFFFFFF
        if self.next is None:
            if self.start_byte is not None and (not payload or payload[0] != self.start_byte):
                if payload:  # (inline: most flows of an unfiltered capture never anchor)
                    if self.waiting + len(payload) > self.max_pending // 4:
                        self._drop_unanchored()  # a small window only
                    self._order += 1
                    self._heap.append((seq, self._order, payload))
                    self.waiting += len(payload)
                return
            self.next = seq  # capture began mid-connection: the stream starts here
            if self._heap:
                self._reanchor()
        start = self._abs(seq)
        if flags & FIN:
            self.fin_at = start + len(payload) + missing
        if payload:
            self._add(start, payload)
        if missing and self.next == start + len(payload):
            # the capture cut this segment short: those bytes are gone
            self.next += missing
            st.count("gaps")
            st.count("gap_bytes", missing)
            self.on_gap()
            self._drain()
        if flags & RST:
            self.flush()
            self.closed = True
        elif self.fin_at is not None and self.next is not None and self.next >= self.fin_at:
            self.closed = True

    # -- before the stream start was seen

    def _drop_unanchored(self) -> None:
        self.stats.count("skipped_bytes", self.waiting)
        self._heap.clear()
        self.waiting = 0

    def _reanchor(self) -> None:
        """The stream start is known: place the segments that waited for it."""
        self._heap = [(self._abs(s), o, p) for s, o, p in self._heap]
        heapq.heapify(self._heap)

    # -- in order, out of order

    def _add(self, start: int, payload: bytes) -> None:
        st = self.stats
        assert self.next is not None
        end = start + len(payload)
        nxt = self.next
        if end <= nxt:
            st.count("retransmitted_segments")
            return
        if start <= nxt:
            if start < nxt:
                st.count("overlaps")
                st.count("overlap_bytes", nxt - start)
                payload = payload[nxt - start:]
            self.next = end
            self.deliver(payload)
            if self._heap:
                self._drain()
            return
        st.count("out_of_order_segments")
        self._order += 1
        heapq.heappush(self._heap, (start, self._order, payload))
        self.waiting += len(payload)
        if self.waiting > self.max_pending:
            self._skip_gap()
            self._drain()

    def _skip_gap(self) -> None:
        assert self.next is not None
        start = self._heap[0][0]
        if start > self.next:
            self.stats.count("gaps")
            self.stats.count("gap_bytes", start - self.next)
            self.next = start
            self.on_gap()

    def _drain(self) -> None:
        heap = self._heap
        while heap and heap[0][0] <= self.next:  # type: ignore[operator]
            start, _o, payload = heapq.heappop(heap)
            self.waiting -= len(payload)
            end = start + len(payload)
            nxt = self.next
            assert nxt is not None
            if end <= nxt:
                self.stats.count("retransmitted_segments")
                continue
            if start < nxt:
                self.stats.count("overlaps")
                self.stats.count("overlap_bytes", nxt - start)
                payload = payload[nxt - start:]
            self.next = end
            self.deliver(payload)

    def skip_gap(self) -> None:
        """Give up the first hole now (bytes that will not come): deliver what waited behind it."""
        if not self._heap:
            return
        if self.next is None:
            self._drop_unanchored()
            return
        self._skip_gap()
        self._drain()

    def flush(self) -> None:
        """Deliver everything still held, giving up the holes in between."""
        if self.next is None:
            if self._heap:
                self._drop_unanchored()
            return
        while self._heap:
            self._skip_gap()
            self._drain()
