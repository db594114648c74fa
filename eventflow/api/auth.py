"""Bearer-token access: every mutating endpoint needs the token; reads too, unless the settings
open them.

A browser cannot set a header on a page load or on an `EventSource`, so reads also take the
token from the `eventflow_token` cookie the web UI's sign-in page sets (SameSite=Strict, so no
other site sends it). Mutating endpoints take the header only: a cookie alone never acts.
"""

from __future__ import annotations

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


def guard(
    token: str, *, required: bool = True, cookie: bool = False
) -> Callable[..., Awaitable[None]]:
    """A dependency refusing requests without `token` (401) or with another (403); with
    `cookie`, the UI's cookie counts as given."""

    async def check(request: Request, given: Credentials) -> None:
        if not required:
            return
        found = given.credentials if given is not None else None
        if found is None and cookie:
            found = request.cookies.get(COOKIE)
        if found is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "this endpoint needs the API token: Authorization: Bearer TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not matches(found, token):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "wrong API token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    return check
