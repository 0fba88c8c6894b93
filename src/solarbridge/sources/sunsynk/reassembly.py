"""The dongle's reports cut out of TCP flows (sans-IO: segments in, report payloads out).

The original tool looks at one TCP segment at a time, so a report split across segments is lost and a
retransmitted segment is decoded twice. Here each direction of each TCP connection is a byte stream rebuilt
by :class:`solarbridge.capture.tcp.StreamReassembler` (duplicates and overlaps trimmed, early segments wait
for the gap to fill), and this module cuts that stream into messages.

The format has no length header, so message boundaries are inferred from where the dongle's writes (the
segments) begin and end: a message starts at a segment that begins with 0xA5, and a report is 292 or 302
bytes from such a start that ends where a segment ends (or where the next 0xA5-led message begins in the
same segment). A 292-byte message could be the first part of a 302-byte report split at that very byte;
such a message is held until the next data of the flow, the flow's end or ``hold`` seconds of capture time,
unless the flow has already shown its layout or the layout is fixed. A capture that joins a connection
mid-stream starts the flow at the first segment that begins with 0xA5. Memory is bounded: at most
``max_flows`` flows and ``max_pending`` bytes of out-of-order data per flow (a quarter of that before a
flow's first 0xA5-led segment).
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import partial

from ...capture.packets import FIN, RST, SYN, PacketStats
from ...capture.tcp import StreamReassembler
from .fields import LAYOUTS, MAGIC

__all__ = ["FIN", "RST", "SYN", "Reassembler", "Stats"]

_SHORT, _LONG = min(LAYOUTS), max(LAYOUTS)


class _Flow:
    """One direction of one connection: its byte stream and the message being cut from it."""

    __slots__ = ("stream", "buf", "starts", "buf_since", "ooo_since", "layout", "last")

    def __init__(self, stream: StreamReassembler) -> None:
        self.stream = stream
        self.buf = bytearray()
        #: offsets in ``buf`` where a segment began (always starts with 0 when buf is not empty)
        self.starts: list[int] = []
        self.buf_since = 0.0
        #: capture time since which bytes wait behind a hole (None: none wait)
        self.ooo_since: float | None = None
        self.layout: int | None = None
        self.last = 0.0


class Stats:
    """Counters: the TCP layer's (``tcp``, shared with every capture) and the message cutter's."""

    __slots__ = ("tcp", "segments", "unknown_messages", "cut_bytes", "flows_evicted", "reports")

    def __init__(self) -> None:
        self.tcp = PacketStats()
        self.segments = 0
        self.unknown_messages = 0
        #: stream bytes that were not part of any 0xA5-led message
        self.cut_bytes = 0
        self.flows_evicted = 0
        self.reports = 0

    @property
    def retransmissions(self) -> int:
        """Segments carrying only bytes already seen."""
        return self.tcp.get("retransmitted_segments", 0)

    @property
    def overlap_bytes(self) -> int:
        """Repeated bytes trimmed from partly new segments."""
        return self.tcp.get("overlap_bytes", 0)

    @property
    def out_of_order(self) -> int:
        return self.tcp.get("out_of_order_segments", 0)

    @property
    def gaps(self) -> int:
        """Holes never filled (capture loss): the stream resynchronised after them."""
        return self.tcp.get("gaps", 0)

    @property
    def skipped_bytes(self) -> int:
        """Bytes not part of any 0xA5-led message, including those of flows that never showed one."""
        return self.cut_bytes + self.tcp.get("skipped_bytes", 0)


class Reassembler:
    """Feed TCP segments of any number of flows; get back complete report payloads, each exactly once."""

    def __init__(self, *, layout: int | None = None, hold: float = 2.0, max_flows: int = 4096,
                 max_pending: int = 16384, flow_idle: float = 900.0) -> None:
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS} or None (auto)")
        self.layout = layout
        self.hold = hold
        self.max_flows = max_flows
        self.max_pending = max_pending
        self.flow_idle = flow_idle
        self.flows: dict[Hashable, _Flow] = {}
        self.stats = Stats()
        #: length -> count of 0xA5-led messages that are not reports (the source logs each length once)
        self.unknown_lengths: dict[int, int] = {}
        self._now = 0.0
        self._next_sweep = 0.0
        # the segment being fed: its capture time and where finished reports go
        self._ts = 0.0
        self._out: list[tuple[float, bytes]] = []

    # ------------------------------------------------------------------ input
    def feed(self, ts: float, flow_key: Hashable, seq: int, flags: int, payload: bytes) -> list[tuple[float, bytes]]:
        """One TCP segment of flow ``flow_key`` (one direction) captured at ``ts``; returns finished reports."""
        out: list[tuple[float, bytes]] = []
        if ts > self._now:
            self._now = ts
        if ts >= self._next_sweep:
            self._next_sweep = ts + min(self.hold, 1.0) / 2
            self._sweep(ts, out)
        self.stats.segments += 1
        flows = self.flows
        fl = flows.get(flow_key)
        if fl is None:
            if not payload and not (flags & SYN):
                return out
            if len(flows) >= self.max_flows:
                self._evict(out)
            fl = flows[flow_key] = self._new_flow()
        fl.last = ts
        self._ts, self._out = ts, out
        s = fl.stream
        before = s.next
        s.segment(seq, flags, payload)
        if s.waiting:
            if fl.ooo_since is None or s.next != before:
                fl.ooo_since = ts
        else:
            fl.ooo_since = None
        if s.closed:  # RST, or FIN with every byte before it seen (a FIN that overtook data waits for it)
            self._finish(fl, ts, out)
            del flows[flow_key]
        return out

    def poll(self, now: float) -> list[tuple[float, bytes]]:
        """Resolve held messages and gaps older than ``hold`` at time ``now`` (live capture calls this on idle)."""
        out: list[tuple[float, bytes]] = []
        if now > self._now:
            self._now = now
        self._sweep(now, out)
        return out

    def close(self) -> list[tuple[float, bytes]]:
        """End of capture: resolve everything still held."""
        out: list[tuple[float, bytes]] = []
        for fl in self.flows.values():
            self._ts, self._out = fl.last, out
            fl.stream.flush()
            self._finish(fl, fl.last, out)
        self.flows.clear()
        return out

    # ------------------------------------------------------------------ internals
    def _new_flow(self) -> _Flow:
        fl = _Flow(None)  # type: ignore[arg-type]
        fl.stream = StreamReassembler(partial(self._append, fl), self.stats.tcp, self.max_pending,
                                      on_gap=partial(self._drop_partial, fl),
                                      on_restart=lambda: self._finish(fl, self._ts, self._out),
                                      start_byte=MAGIC)
        return fl

    def _evict(self, out: list[tuple[float, bytes]]) -> None:
        key = min(self.flows, key=lambda k: self.flows[k].last)
        fl = self.flows.pop(key)
        self._finish(fl, fl.last, out)
        self.stats.flows_evicted += 1

    def _sweep(self, now: float, out: list[tuple[float, bytes]]) -> None:
        hold = self.hold
        dead = []
        self._ts, self._out = now, out
        for key, fl in self.flows.items():
            s = fl.stream
            if fl.ooo_since is not None and now - fl.ooo_since >= hold:
                # bytes before the earliest waiting segment were never captured: resync after them
                s.skip_gap()
                fl.ooo_since = now if s.waiting else None
            if fl.buf and now - fl.buf_since >= hold:
                self._finish(fl, now, out)
            if now - fl.last >= self.flow_idle and not fl.buf and not s.waiting:
                dead.append(key)
        for key in dead:
            del self.flows[key]

    def _drop_partial(self, fl: _Flow) -> None:
        if fl.buf:
            if fl.buf[0] == MAGIC:
                self._unknown(len(fl.buf))
            else:
                self.stats.cut_bytes += len(fl.buf)
        fl.buf.clear()
        fl.starts.clear()

    def _append(self, fl: _Flow, data: bytes) -> None:
        """In-order stream bytes (one segment's worth) arrive."""
        ts, out = self._ts, self._out
        buf = fl.buf
        if not buf:
            n = len(data)
            # fast path: a whole report in one segment, layout known or unambiguous
            known = self.layout or fl.layout
            # (302 bytes with 0xA5 at byte 292 may be a 292-byte report plus the head of the next: not fast)
            if data[0] == MAGIC and (n == known or (known is None and n == _LONG and data[_SHORT] != MAGIC)):
                self._emit(fl, ts, bytes(data), out)
                return
            if data[0] != MAGIC:
                self.stats.cut_bytes += n
                return
            fl.buf_since = ts
        fl.starts.append(len(buf))
        buf += data
        self._scan(fl, ts, out, final=False)

    def _known(self, fl: _Flow) -> int | None:
        return self.layout or fl.layout

    def _scan(self, fl: _Flow, ts: float, out: list[tuple[float, bytes]], *, final: bool) -> None:
        """Cut complete messages off the front of the flow's buffer.

        Candidates are (start, size) pairs: a start is a segment start led by 0xA5, the size a layout. A
        candidate ending where a segment ends and the next 0xA5-led message begins is strongest; one
        followed by 0xA5 inside a segment (coalesced writes) or ending where the data ends comes next; one
        ending at a segment end followed by other bytes is weakest. The strongest, earliest candidate wins
        (at equal strength the one with evidence after it); bytes before it are an unknown message. A choice
        that later data could still change (it ends exactly at the end of the data while the layout is not
        known, or another 0xA5-led segment begins inside it) waits for more data, the flow's end or the hold.
        """
        while fl.buf:
            buf, starts = fl.buf, fl.starts
            if buf[0] != MAGIC:
                self._drop_to_next_start(fl, unknown=False)
                continue
            n = len(buf)
            known = self._known(fl)
            sizes = LAYOUTS if known is None else (known,)
            best: tuple[int, int, int, int] | None = None  # (score, -start, inside, size)
            lead = [x for x in starts if buf[x] == MAGIC] if len(starts) > 1 else [0]
            bounds = set(starts)
            for st in lead:
                if st > _LONG:
                    break
                for size in sizes:
                    e = st + size
                    if e > n:
                        continue
                    if e == n:
                        score = 2  # the data ends there: writes end at segment ends, but more may follow
                    elif buf[e] == MAGIC:
                        score = 3 if e in bounds else 2
                    else:
                        score = 1 if e in bounds else 0
                    if score:
                        cand = (score, -st, int(e < n), size)
                        if best is None or cand[:3] > best[:3]:
                            best = cand
            if best is not None:
                score, neg, inside, size = best
                st = -neg
                e = st + size
                if not final:
                    inner = any(0 < x < e for x in lead if x != st)
                    if inner or (known is None and not inside):
                        return  # later data may change the answer
                    if known is None and score == 1 and size < _LONG and n < st + _LONG:
                        return  # other bytes follow: they may be the tail of a longer report
                if st:
                    self._unknown(st)
                msg = bytes(buf[st:e])
                self._cut(fl, e, ts)
                self._emit(fl, ts, msg, out)
                continue
            limit = _LONG if known is None else known
            if final or n > limit + _LONG:
                self._drop_to_next_start(fl, unknown=True)
                continue
            return  # not enough data yet

    def _cut(self, fl: _Flow, e: int, ts: float) -> None:
        del fl.buf[:e]
        starts = [s - e for s in fl.starts if s > e]
        if fl.buf and (not starts or starts[0] != 0):
            starts.insert(0, 0)
        fl.starts[:] = starts
        if fl.buf:
            fl.buf_since = ts

    def _drop_to_next_start(self, fl: _Flow, *, unknown: bool) -> None:
        """Drop the message at the front: up to the next segment start that begins with 0xA5."""
        buf, starts = fl.buf, fl.starts
        cut = len(buf)
        for s in starts:
            if s > 0 and buf[s] == MAGIC:
                cut = s
                break
        if unknown:
            self._unknown(cut)
        else:
            self.stats.cut_bytes += cut
        del buf[:cut]
        fl.starts[:] = [s - cut for s in starts if s >= cut]

    def _unknown(self, length: int) -> None:
        self.stats.unknown_messages += 1
        self.unknown_lengths[length] = self.unknown_lengths.get(length, 0) + 1

    def _emit(self, fl: _Flow, ts: float, msg: bytes, out: list[tuple[float, bytes]]) -> None:
        if self.layout is None:
            fl.layout = len(msg)
        self.stats.reports += 1
        out.append((ts, msg))

    def _finish(self, fl: _Flow, ts: float, out: list[tuple[float, bytes]]) -> None:
        """No more data will follow what is buffered (flow end, timeout): resolve it."""
        if fl.buf:
            self._scan(fl, ts, out, final=True)
            self._drop_partial(fl)
