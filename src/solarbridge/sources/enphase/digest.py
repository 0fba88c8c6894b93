"""HTTP Digest access authentication (RFC 7616), the server side, sans-IO.

Gateways on firmware before 7 protect part of their local API with Digest auth (user ``envoy``,
password: the last 6 digits of the gateway serial). The simulator uses :class:`DigestRealm` to issue
challenges and check answers; clients use any RFC 7616 implementation (httpx's ``DigestAuth``, curl).

Supported: ``qop=auth``, algorithms MD5, MD5-sess, SHA-256 and SHA-256-sess. Nonces are random,
expire after ``nonce_ttl`` seconds (then the challenge says ``stale=true``) and each nonce count
(``nc``) is accepted once per nonce, so a captured answer cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),  # noqa: S324 - the protocol's own hash
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}


def parse_params(text: str) -> dict[str, str]:
    """``key=value, key="quoted, value"`` pairs of an Authorization/WWW-Authenticate header (keys lower case)."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lower()
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            buf = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1  # the closing quote
            value = "".join(buf)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        if key:
            out[key] = value
    return out


class DigestRealm:
    """Challenges and verification for one realm; ``users`` maps user name -> password (read at each check)."""

    def __init__(self, realm: str, users: Callable[[], dict[str, str]], algorithm: str = "MD5",
                 nonce_ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        base = algorithm.upper().removesuffix("-SESS")
        if base not in ALGORITHMS:
            raise ValueError(f"digest algorithm must be one of MD5, MD5-sess, SHA-256, SHA-256-sess (got {algorithm!r})")
        self.realm, self.users, self.algorithm = realm, users, algorithm
        self.nonce_ttl, self.clock = nonce_ttl, clock
        self.opaque = secrets.token_hex(16)
        #: nonce -> (issued at, nonce counts already used)
        self._nonces: dict[str, tuple[float, set[int]]] = {}
        self.failures = 0

    def challenge(self, stale: bool = False) -> str:
        """A fresh ``WWW-Authenticate`` header value."""
        now = self.clock()
        for k in [k for k, (t, _) in self._nonces.items() if now - t > self.nonce_ttl * 2]:
            del self._nonces[k]
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = (now, set())
        return (f'Digest realm="{self.realm}", qop="auth", nonce="{nonce}", opaque="{self.opaque}", '
                f"algorithm={self.algorithm}" + (", stale=true" if stale else ""))

    def check(self, method: str, uri: str, header: str) -> str:
        """``"ok"``, ``"stale"`` (a good answer to an expired nonce: challenge again with stale=true) or
        ``"denied"`` for the ``Authorization`` header of a request to ``uri`` (its path and query)."""
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "digest":
            return "denied"
        p = parse_params(rest)
        user, nonce, nc_text = p.get("username", ""), p.get("nonce", ""), p.get("nc", "")
        if (p.get("realm") != self.realm or p.get("qop") != "auth" or p.get("uri") != uri
                or p.get("userhash", "false").lower() == "true"
                or p.get("algorithm", "MD5").upper() != self.algorithm.upper() or not p.get("cnonce")):
            self.failures += 1
            return "denied"
        if p.get("opaque", self.opaque) != self.opaque:
            self.failures += 1
            return "denied"
        password = self.users().get(user)
        try:
            nc = int(nc_text, 16)
        except ValueError:
            nc = -1
        if password is None or nc < 1 or not hmac.compare_digest(p.get("response", ""),
                                                                   self.expected(p, method, password)):
            self.failures += 1
            return "denied"
        entry = self._nonces.get(nonce)
        if entry is None or self.clock() - entry[0] > self.nonce_ttl:
            return "stale"
        if nc in entry[1]:
            self.failures += 1
            return "denied"  # a replayed answer
        entry[1].add(nc)
        return "ok"

    def expected(self, p: dict[str, str], method: str, password: str) -> str:
        """The ``response`` value RFC 7616 section 3.4.1 gives for these parameters."""
        alg = self.algorithm.upper()
        h = ALGORITHMS[alg.removesuffix("-SESS")]
        ha1 = h(f"{p.get('username', '')}:{self.realm}:{password}".encode())
        if alg.endswith("-SESS"):
            ha1 = h(f"{ha1}:{p.get('nonce', '')}:{p.get('cnonce', '')}".encode())
        ha2 = h(f"{method}:{p.get('uri', '')}".encode())
        return h(f"{ha1}:{p.get('nonce', '')}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}".encode())
