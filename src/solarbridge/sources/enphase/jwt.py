"""The Enphase owner token: a JWT whose ``exp`` is read locally (the signature is the gateway's business)."""

from __future__ import annotations

import base64
import binascii
import json

#: a token is used only while it has at least this much life left (the original's rule)
MIN_LIFETIME_S = 3600


class TokenFormatError(ValueError):
    """The text is not a JWT we can read (message is the original's)."""


def payload(token: str) -> dict[str, object]:
    """The decoded payload (between the first and the last dot)."""
    first, last = token.find("."), token.rfind(".")
    body = token[first + 1:last] if 0 <= first < last else ""
    if not body:
        raise TokenFormatError("Failed to parse token")
    # the original feeds plain base64 -d; tokens are base64url, so accept both alphabets
    body = body.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise TokenFormatError("Failed to base64 decode token payload") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise TokenFormatError("Failed to base64 decode token payload") from None
    if not isinstance(doc, dict):
        raise TokenFormatError("Token payload missing expires")
    return doc


def expiry(token: str) -> int:
    """``exp`` as epoch seconds; a missing or non-numeric exp counts as 0 (expired), like bash."""
    exp = payload(token).get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return 0
    return int(exp)


def check(token: str, now: float) -> tuple[bool, str]:
    """(usable, reason): usable when exp >= now + 1 h."""
    exp = expiry(token)
    if exp >= now + MIN_LIFETIME_S:
        return True, ""
    if exp <= now:
        return False, "Token expired"
    return False, "Token lifetime less than 1 hour"


def make(claims: dict[str, object], signature: str = "c2lnbmF0dXJl") -> str:
    """An unsigned JWT with these claims (simulator and tests)."""

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()

    return f"{b64({'kid': 'solarbridge-sim', 'typ': 'JWT', 'alg': 'ES256'})}.{b64(claims)}.{signature}"
