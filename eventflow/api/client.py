"""The operator's commands' way to a running eventflow: its HTTP API.

One client for both runtimes: the API of `EVENTFLOW_API_URL` (a Kafka deployment's `eventflow
server`, or any instance), else the `eventflow dev` running in `EVENTFLOW_HOME`, found through
the address and token it wrote to `HOME/api.json`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from ..errors import ConfigurationError, EventError, NotRunning
from ..lifecycle import Lifecycle
from ..settings import Settings


class ApiError(EventError):
    """The API refused a request; `status` is the HTTP status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def locate(settings: Settings) -> tuple[str, str | None]:
    """The API's base URL and token, from the settings or a dev instance's `api.json`."""
    token = settings.api_token.get_secret_value() if settings.api_token else None
    if settings.api_url:
        return settings.api_url.rstrip("/"), token
    try:
        found = orjson.loads(settings.api_file.read_bytes())
    except FileNotFoundError:
        raise NotRunning(
            f"no eventflow dev running in {settings.home} and no EVENTFLOW_API_URL: start "
            "`eventflow dev FILE`, or point EVENTFLOW_API_URL at an `eventflow server`"
        ) from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise ConfigurationError(f"cannot read {settings.api_file}: {e}") from None
    return str(found["url"]), token or found.get("token")


class ApiClient(Lifecycle):
    """`get` and `post` JSON; what the API refuses raises `ApiError` with its reason."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.url = ""
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._http is not None:
            return
        self.url, token = locate(self.settings)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=self.timeout)

    async def stop(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def get(self, path: str, **params: Any) -> Any:
        """The JSON the API answers; parameters that are None are left out."""
        return await self._call("GET", path, params=_params(params))

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self._call("POST", path, json=body or {})

    async def stream(self, path: str, **params: Any) -> AsyncGenerator[dict[str, Any]]:
        """The server-sent events of `path`, each as a dict: `event`, `id` and `data` (the
        CloudEvent, decoded); a comment (such as the opening `live`) as `{"comment": text}`."""
        if self._http is None:
            raise NotRunning("the API client is not started")
        timeout = httpx.Timeout(self.timeout, read=None)  # a quiet stream is not a dead one
        try:
            async with self._http.stream(
                "GET", path, params=_params(params), timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._raise_for(response)
                fields: dict[str, Any] = {}
                async for line in response.aiter_lines():
                    if line.startswith(":"):
                        yield {"comment": line[1:].strip()}
                    elif line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        # A value over several lines comes as several `data:` lines.
                        fields[name] = f"{fields[name]}\n{value}" if name in fields else value
                    elif "data" in fields:
                        fields["data"] = orjson.loads(fields["data"])
                        yield fields
                        fields = {}
        except httpx.TransportError as e:
            raise self._unreachable(e) from e

    def _unreachable(self, e: Exception) -> NotRunning:
        return NotRunning(
            f"no eventflow API at {self.url} ({e or type(e).__name__}): start `eventflow dev "
            "FILE`, or `eventflow server` and point EVENTFLOW_API_URL at it"
        )

    async def _call(self, method: str, path: str, **options: Any) -> Any:
        if self._http is None:
            raise NotRunning("the API client is not started")
        try:
            response = await self._http.request(method, path, **options)
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
        self._raise_for(response)
        return response.json()

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise ConfigurationError(
                f"the API at {self.url} refused the token ({_reason(response)}): set "
                "EVENTFLOW_API_TOKEN"
            )
        if response.status_code >= 400:
            raise ApiError(response.status_code, _reason(response))


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', ())[1:])}: {d.get('msg')}" for d in detail
        )
    return str(detail or response.text or response.reason_phrase)
