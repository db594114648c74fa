"""Bearer-token access: every mutating endpoint needs the token; reads too, unless the settings
open them.

A browser cannot set a header on a page load or on an `EventSource`, so reads also take the
`eventflow_token` cookie the web UI's sign-in page sets (HttpOnly, SameSite=Strict, so no other
site sends it and no script reads it). It holds a read pass derived from the token, never the
token: a cookie seen in a proxy's log or a saved HAR file reads, and cannot act. Mutating
endpoints take the header only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(auto_error=False, description="The API token (`EVENTFLOW_API_TOKEN`).")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]

#: Where the web UI keeps the token for reads.
COOKIE = "eventflow_token"


def matches(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode(), token.encode())


def read_pass(token: str) -> str:
    """What the UI's cookie holds: lets its holder read, derived from the token one way."""
    return hmac.new(token.encode(), b"eventflow web UI read pass", hashlib.sha256).hexdigest()


def cookie_reads(request: Request, token: str) -> bool | None:
    """Whether the request's cookie is the read pass of `token`; None if it has none."""
    given = request.cookies.get(COOKIE)
    return None if given is None else matches(given, read_pass(token))


def guard(
    token: str, *, required: bool = True, cookie: bool = False
) -> Callable[..., Awaitable[None]]:
    """A dependency refusing requests without `token` (401) or with another (403); with
    `cookie`, the UI's cookie counts as given."""

    async def check(request: Request, given: Credentials) -> None:
        if not required:
            return
        if given is None and cookie and (reads := cookie_reads(request, token)) is not None:
            if reads:
                return
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "the web UI's sign-in is of another token: sign in again",
            )
        if given is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "this endpoint needs the API token: Authorization: Bearer TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not matches(given.credentials, token):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "wrong API token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    return check
