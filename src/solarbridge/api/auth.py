"""Bearer-token check for control routes (also used by the GivTCP-compatible router).

With ``[api] token`` unset, control routes are open (the default listen address is
loopback only); with it set, a missing token is 401 and a wrong one is 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(auto_error=False, description="the [api] token from the daemon config")


def token_checker(token: Any) -> Callable[..., None]:
    """A FastAPI dependency enforcing ``token`` (a str, a pydantic SecretStr or None)."""
    secret = token.get_secret_value() if hasattr(token, "get_secret_value") else token
    expected = secret.encode() if secret else None

    def check(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if expected is None:
            return
        if creds is None:
            header = request.headers.get("authorization")
            why = "a bearer token is required" if not header else "the Authorization header must be 'Bearer <token>'"
            raise HTTPException(401, f"{why} for this route", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(creds.credentials.encode(), expected):
            raise HTTPException(403, "the bearer token is not valid")

    return check
