"""Bearer-token access: every mutating endpoint needs the token; reads too, unless the settings
open them."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import HTTPException, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(auto_error=False, description="The API token (`EVENTFLOW_API_TOKEN`).")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def guard(token: str, *, required: bool = True) -> Callable[..., Awaitable[None]]:
    """A dependency refusing requests without `token` (401) or with another (403)."""

    async def check(given: Credentials) -> None:
        if not required:
            return
        if given is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "this endpoint needs the API token: Authorization: Bearer TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not secrets.compare_digest(given.credentials.encode(), token.encode()):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "wrong API token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    return check
