"""A durable, size-capped, first-in-first-out disk spool for sinks that must not lose data.

Each entry is an opaque byte string (for the InfluxDB sink: newline-separated
line-protocol points) plus the number of points it holds. Entries live in one
SQLite database in WAL mode under the state directory, so they survive a
daemon crash or restart, and are read back strictly in insertion order. A
sender removes entries only after the server acknowledged them.

Size cap policy: when the bytes held exceed ``max_bytes``, the *oldest*
entries are deleted until the spool fits again; every dropped point is counted
(``dropped``) and logged once per drop episode. Newer data is worth more than
older data when a server has been away for days, and a bounded disk is worth
more than both.

``synchronous`` is SQLite's durability level: ``NORMAL`` (default) survives a
process crash (kill -9); ``FULL`` also survives power loss at the cost of an
fsync per entry.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    points INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


class SpoolBusy(RuntimeError):
    """Another process (or another sink with the same name) holds this spool."""


@dataclass(slots=True)
class Entry:
    id: int
    created: float
    points: int
    body: bytes


class Spool:
    """FIFO of byte entries on disk. Thread-safe; every call is short (one small transaction)."""

    def __init__(self, path: str | Path, *, max_bytes: int = 256 * 1024 * 1024,
                 synchronous: str = "NORMAL", log: logging.Logger | None = None) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL"):
            raise ValueError("synchronous must be OFF, NORMAL or FULL")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one owner per spool: two senders would deliver the same entries twice
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SpoolBusy(f"spool {self.path} is in use by another process") from None
        self.max_bytes = max_bytes
        self.log = log or logging.getLogger("solarbridge.spool")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)
        self.path.chmod(0o600)
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(points), 0), COALESCE(SUM(LENGTH(body)), 0)"
                               " FROM spool").fetchone()
        self.entries, self.points, self.bytes = int(row[0]), int(row[1]), int(row[2])
        #: totals since this process opened the spool
        self.sent_points = 0
        self.dropped_points = 0
        self._dropping = False

    # ------------------------------------------------------------------ writing
    def put(self, body: bytes, points: int, created: float | None = None) -> None:
        """Append one entry (durable when this returns), then enforce the size cap."""
        now = time.time() if created is None else created
        with self._lock:
            self._db.execute("INSERT INTO spool (created, points, body) VALUES (?, ?, ?)", (now, points, body))
            self.entries += 1
            self.points += points
            self.bytes += len(body)
            if self.bytes > self.max_bytes:
                self._enforce_cap()
            elif self._dropping:
                self._dropping = False

    def _enforce_cap(self) -> None:
        dropped_entries = dropped_points = 0
        # delete the oldest entries in chunks until under the cap (keep at least the newest entry)
        while self.bytes > self.max_bytes and self.entries > 1:
            rows = self._db.execute("SELECT id, points, LENGTH(body) FROM spool ORDER BY id LIMIT 64").fetchall()
            last_id = None
            for rid, pts, size in rows:
                if self.bytes <= self.max_bytes or self.entries <= 1:
                    break
                last_id = rid
                self.entries -= 1
                self.points -= pts
                self.bytes -= size
                dropped_entries += 1
                dropped_points += pts
            if last_id is None:
                break
            self._db.execute("DELETE FROM spool WHERE id <= ?", (last_id,))
        if dropped_points:
            self.dropped_points += dropped_points
            if not self._dropping:
                self.log.warning("spool %s is full (cap %d bytes): dropping the oldest data; %d point(s) dropped"
                                 " so far", self.path, self.max_bytes, self.dropped_points)
                self._dropping = True

    # ------------------------------------------------------------------ reading
    def peek(self, max_points: int, max_bytes: int | None = None) -> list[Entry]:
        """The oldest entries, in order, up to ``max_points`` points (at least one entry if any)."""
        out: list[Entry] = []
        total = size = 0
        with self._lock:
            cur = self._db.execute("SELECT id, created, points, body FROM spool ORDER BY id LIMIT 10000")
            for rid, created, pts, body in cur:
                if out and (total + pts > max_points or (max_bytes is not None and size + len(body) > max_bytes)):
                    break
                out.append(Entry(rid, created, pts, bytes(body)))
                total += pts
                size += len(body)
            cur.close()
        return out

    def ack(self, entries: list[Entry]) -> None:
        """Remove delivered entries (must be the oldest ones, as returned by :meth:`peek`)."""
        if not entries:
            return
        with self._lock:
            cur = self._db.execute("DELETE FROM spool WHERE id <= ?", (entries[-1].id,))
            if cur.rowcount != len(entries):
                # the cap dropped some of them meanwhile: recount from the database
                self._recount()
            else:
                pts = sum(e.points for e in entries)
                self.entries -= len(entries)
                self.points -= pts
                self.bytes -= sum(len(e.body) for e in entries)
            self.sent_points += sum(e.points for e in entries)

    def discard(self, entries: list[Entry]) -> None:
        """Remove entries that can never be delivered (server rejected their content); counted as dropped."""
        if not entries:
            return
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE id <= ?", (entries[-1].id,))
            self.dropped_points += sum(e.points for e in entries)
            self._recount()

    def _recount(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(points), 0), COALESCE(SUM(LENGTH(body)), 0)"
                               " FROM spool").fetchone()
        self.entries, self.points, self.bytes = int(row[0]), int(row[1]), int(row[2])

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds since the oldest undelivered entry was spooled (0 when empty)."""
        with self._lock:
            row = self._db.execute("SELECT created FROM spool ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - float(row[0]))

    def __len__(self) -> int:
        return self.entries

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1
