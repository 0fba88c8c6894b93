"""Per-flow TCP stream reassembly for the dongle's reports (sans-IO: segments in, report payloads out).

The original tool looks at one TCP segment at a time, so a report split across segments is lost and a
retransmitted segment is decoded twice. Here each direction of each TCP connection is a byte stream rebuilt
from sequence numbers: duplicate and overlapping bytes are trimmed, segments that arrive early wait for the
gap to fill, and the stream is cut into messages.

The format has no length header, so message boundaries are inferred: a message starts at a segment that
begins with 0xA5, and a report is 292 or 302 bytes from such a start that ends where a segment ends (or
where the next 0xA5-led message begins in the same segment). A 292-byte message could be the first part of
a 302-byte report split at that very byte; such a message is held until the next data of the flow, the flow's
end or ``hold`` seconds of capture time, unless the flow has already shown its layout or the layout is fixed.
Memory is bounded: at most ``max_flows`` flows and ``max_pending`` bytes of out-of-order data per flow
(a quarter of that before a flow's first 0xA5-led segment).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from .fields import LAYOUTS, MAGIC

SYN, FIN, RST = 0x02, 0x01, 0x04
_SHORT, _LONG = min(LAYOUTS), max(LAYOUTS)
_MOD = 1 << 32
_HALF = 1 << 31


def _rel(a: int, b: int) -> int:
    """a - b in 32-bit sequence space, as a signed distance."""
    d = (a - b) % _MOD
    return d - _MOD if d >= _HALF else d


@dataclass(slots=True)
class _Flow:
    nxt: int | None = None
    buf: bytearray = field(default_factory=bytearray)
    #: offsets in ``buf`` where a segment began (always starts with 0 when buf is not empty)
    starts: list[int] = field(default_factory=list)
    buf_since: float = 0.0
    ooo: dict[int, bytes] = field(default_factory=dict)
    ooo_bytes: int = 0
    ooo_since: float = 0.0
    layout: int | None = None
    last: float = 0.0


@dataclass(slots=True)
class Stats:
    segments: int = 0
    retransmissions: int = 0  # segments carrying only bytes already seen
    overlap_bytes: int = 0  # repeated bytes trimmed from partly new segments
    out_of_order: int = 0
    gaps: int = 0  # holes never filled (capture loss): stream resynchronised
    unknown_messages: int = 0
    skipped_bytes: int = 0  # stream bytes that were not part of any 0xA5-led message
    flows_evicted: int = 0
    reports: int = 0


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
            fl = flows[flow_key] = _Flow()
        fl.last = ts
        if flags & SYN:
            self._finish(fl, ts, out)
            fl.nxt = (seq + 1) % _MOD
            fl.buf.clear()
            fl.starts.clear()
            fl.ooo.clear()
            fl.ooo_bytes = 0
            seq = fl.nxt
            if not payload:
                return out
        if payload:
            if fl.nxt is None:
                # joined mid-stream (no SYN seen): anchor the stream at the first segment that can start a
                # message; earlier-looking segments wait, since segments may arrive out of order
                if payload[0] != MAGIC:
                    # a small window only: on an unfiltered capture most flows are not the dongle's
                    if fl.ooo_bytes + len(payload) > self.max_pending // 4:
                        self.stats.skipped_bytes += fl.ooo_bytes
                        fl.ooo.clear()
                        fl.ooo_bytes = 0
                    if not fl.ooo:
                        fl.ooo_since = ts
                    if seq not in fl.ooo:
                        fl.ooo[seq] = bytes(payload)
                        fl.ooo_bytes += len(payload)
                    return out
                fl.nxt = seq
            rel = _rel(seq, fl.nxt)
            n = len(payload)
            if rel < 0:
                if rel + n <= 0:
                    self.stats.retransmissions += 1
                else:
                    self.stats.overlap_bytes += -rel
                    self._append(fl, ts, payload[-rel:], out)
                    self._drain_ooo(fl, ts, out)
            elif rel == 0:
                self._append(fl, ts, payload, out)
                if fl.ooo:
                    self._drain_ooo(fl, ts, out)
            else:
                self.stats.out_of_order += 1
                old = fl.ooo.get(seq)
                if old is None or len(old) < n:
                    if not fl.ooo:
                        fl.ooo_since = ts
                    fl.ooo[seq] = bytes(payload)
                    fl.ooo_bytes += n - (len(old) if old else 0)
                if fl.ooo_bytes > self.max_pending:
                    self._skip_gap(fl, ts, out)
        if flags & RST or (flags & FIN and not fl.ooo):
            self._finish(fl, ts, out)
            del flows[flow_key]
        # (a FIN that overtook missing data leaves the flow to the hold timeout, which resolves it)
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
            while fl.ooo:
                self._skip_gap(fl, fl.last, out)
            self._finish(fl, fl.last, out)
        self.flows.clear()
        return out

    # ------------------------------------------------------------------ internals
    def _evict(self, out: list[tuple[float, bytes]]) -> None:
        key = min(self.flows, key=lambda k: self.flows[k].last)
        fl = self.flows.pop(key)
        self._finish(fl, fl.last, out)
        self.stats.flows_evicted += 1

    def _sweep(self, now: float, out: list[tuple[float, bytes]]) -> None:
        hold = self.hold
        dead = []
        for key, fl in self.flows.items():
            if fl.ooo and now - fl.ooo_since >= hold:
                self._skip_gap(fl, now, out)
            if fl.buf and now - fl.buf_since >= hold:
                self._finish(fl, now, out)
            if now - fl.last >= self.flow_idle and not fl.buf and not fl.ooo:
                dead.append(key)
        for key in dead:
            del self.flows[key]

    def _skip_gap(self, fl: _Flow, ts: float, out: list[tuple[float, bytes]]) -> None:
        """Bytes before the earliest waiting segment were never captured: drop the partial message, resync."""
        if fl.nxt is None:  # never anchored: nothing there starts a message
            self.stats.skipped_bytes += fl.ooo_bytes
            fl.ooo.clear()
            fl.ooo_bytes = 0
            return
        nxt = fl.nxt
        first = min(fl.ooo, key=lambda s: _rel(s, nxt))
        self.stats.gaps += 1
        self._drop_partial(fl)
        fl.nxt = first
        self._drain_ooo(fl, ts, out)

    def _drop_partial(self, fl: _Flow) -> None:
        if fl.buf:
            if fl.buf[0] == MAGIC:
                self._unknown(len(fl.buf))
            else:
                self.stats.skipped_bytes += len(fl.buf)
        fl.buf.clear()
        fl.starts.clear()

    def _drain_ooo(self, fl: _Flow, ts: float, out: list[tuple[float, bytes]]) -> None:
        while fl.ooo:
            nxt = fl.nxt
            assert nxt is not None
            progressed = False
            for s in sorted(fl.ooo, key=lambda s: _rel(s, nxt)):
                rel = _rel(s, nxt)
                if rel > 0:
                    break
                data = fl.ooo.pop(s)
                fl.ooo_bytes -= len(data)
                if rel + len(data) <= 0:
                    self.stats.retransmissions += 1  # (or bytes from before a mid-stream anchor)
                    continue
                if rel < 0:
                    self.stats.overlap_bytes += -rel
                self._append(fl, ts, data[-rel:] if rel else data, out)
                progressed = True
                break
            if not progressed:
                break
        if not fl.ooo:
            fl.ooo_bytes = 0
        else:
            fl.ooo_since = ts

    def _append(self, fl: _Flow, ts: float, data: bytes, out: list[tuple[float, bytes]]) -> None:
        """In-order stream bytes (one segment's worth) arrive."""
        assert fl.nxt is not None
        fl.nxt = (fl.nxt + len(data)) % _MOD
        buf = fl.buf
        if not buf:
            n = len(data)
            # fast path: a whole report in one segment, layout known or unambiguous
            known = self._known(fl)
            # (302 bytes with 0xA5 at byte 292 may be a 292-byte report plus the head of the next: not fast)
            if data[0] == MAGIC and (n == known or (known is None and n == _LONG and data[_SHORT] != MAGIC)):
                self._emit(fl, ts, bytes(data), out)
                return
            if data[0] != MAGIC:
                self.stats.skipped_bytes += n
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
            self.stats.skipped_bytes += cut
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
