"""Which worker of ``n`` owns a device: rendezvous (highest random weight) hashing.

Every worker computes, for each device key, a score per worker index ``0..n-1`` and owns the
devices where its own index scores highest. All workers hold the same inventory, so together they
cover every device exactly once with no coordination. When ``n`` grows to ``n + 1`` only the devices
whose new highest score belongs to the new worker move (about ``1/(n + 1)`` of them); when the last
worker goes, only its own devices move.

The score is BLAKE2b of the key and the index, not Python's ``hash()``, which is salted per process:
every worker, on any Python version or machine, must agree.

A worker learns its index from ``[daemon] shard = "k/n"`` or ``SOLARBRIDGE_SHARD`` (which wins).
``k`` may be ``ordinal``: the index then comes from ``SOLARBRIDGE_SHARD_INDEX`` (e.g. the Kubernetes
downward API's ``apps.kubernetes.io/pod-index`` label) or else from the host name's trailing
``-<number>``, which is how a StatefulSet names its pods (``solarbridge-3``).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from hashlib import blake2b

#: most workers a fleet may have (a score per device per worker is computed at start)
MAX_WORKERS = 1024
ENV_SHARD = "SOLARBRIDGE_SHARD"
ENV_INDEX = "SOLARBRIDGE_SHARD_INDEX"

_ORDINAL = re.compile(r"-(\d+)$")
_SHARD = re.compile(r"^\s*([^/\s]+)\s*/\s*(\d+)\s*$")


def score(key: str, worker: int) -> int:
    """The weight of ``worker`` for ``key``: 64 bits of BLAKE2b, the same in every process."""
    return int.from_bytes(blake2b(f"{key}\x00{worker}".encode(), digest_size=8).digest(), "big")


def owner(key: str, n: int) -> int:
    """The index (``0..n-1``) of the worker that owns ``key`` among ``n`` workers."""
    if n < 1:
        raise ValueError("n must be >= 1")
    best, best_score = 0, -1
    for j in range(n):
        s = score(key, j)
        if s > best_score:
            best, best_score = j, s
    return best


def assign(keys: Iterable[str], n: int) -> dict[str, int]:
    """Every key's owner among ``n`` workers."""
    return {k: owner(k, n) for k in keys}


@dataclass(frozen=True)
class Shard:
    """This worker's place in the fleet: index ``index`` (0-based) of ``count`` workers."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_WORKERS:
            raise ValueError(f"the worker count must be 1..{MAX_WORKERS} (got {self.count})")
        if not 0 <= self.index < self.count:
            raise ValueError(f"the worker index must be 0..{self.count - 1} (got {self.index})")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str) -> bool:
        return owner(key, self.count) == self.index

    def __str__(self) -> str:
        return self.label


def ordinal(env: Mapping[str, str] | None = None, hostname: str | None = None) -> int:
    """This pod's StatefulSet ordinal: ``SOLARBRIDGE_SHARD_INDEX``, else the host name's ``-<n>`` suffix."""
    env = os.environ if env is None else env
    text = env.get(ENV_INDEX, "").strip()
    if text:
        if not text.isdigit():
            raise ValueError(f"{ENV_INDEX} must be a number >= 0 (got {text!r})")
        return int(text)
    host = hostname if hostname is not None else (env.get("HOSTNAME") or socket.gethostname())
    m = _ORDINAL.search(host.split(".")[0])
    if m is None:
        raise ValueError(f"'ordinal' needs {ENV_INDEX} or a host name ending in -<number>, as a StatefulSet"
                         f" pod's (host name is {host!r})")
    return int(m.group(1))


def parse(text: str, env: Mapping[str, str] | None = None, hostname: str | None = None) -> Shard:
    """``"k/n"`` (k may be ``ordinal``) -> :class:`Shard`; a ``ValueError`` says what is allowed."""
    m = _SHARD.match(text)
    if m is None:
        raise ValueError(f"must be \"k/n\": worker k (0..n-1, or 'ordinal') of n workers (got {text!r})")
    k_text, n = m.group(1), int(m.group(2))
    if not 1 <= n <= MAX_WORKERS:
        raise ValueError(f"n must be 1..{MAX_WORKERS} (got {text!r})")
    if k_text == "ordinal":
        k = ordinal(env, hostname)
        if k >= n:
            raise ValueError(f"the pod ordinal {k} is not below the worker count {n}; scale the StatefulSet"
                             f" and the shard's n together")
    elif k_text.isdigit():
        k = int(k_text)
        if k >= n:
            raise ValueError(f"k must be 0..{n - 1} (got {text!r})")
    else:
        raise ValueError(f"k must be a number 0..{n - 1} or 'ordinal' (got {text!r})")
    return Shard(k, n)


def resolve(configured: str, env: Mapping[str, str] | None = None, hostname: str | None = None
            ) -> tuple[Shard | None, str]:
    """The shard from ``SOLARBRIDGE_SHARD`` or else the config value; returns (shard, where it came from)."""
    env = os.environ if env is None else env
    from_env = env.get(ENV_SHARD, "").strip()
    if from_env:
        return parse(from_env, env, hostname), ENV_SHARD
    if configured.strip():
        return parse(configured, env, hostname), "daemon.shard"
    return None, ""
