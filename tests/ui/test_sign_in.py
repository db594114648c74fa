"""Pages and their live stream need the token unless reads are open; the sign-in refuses a
wrong one; a link from `eventflow dev --ui` signs in by itself."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from eventflow.api.auth import read_pass
from eventflow.ui.site import local

from .conftest import Shop, start_shop

pytestmark = pytest.mark.slow


def test_a_page_without_the_token_asks_for_it_and_refuses_a_wrong_one(
    context: BrowserContext, shop: Shop
) -> None:
    page = context.new_page()
    page.goto(f"{shop.url}/ui/events")
    assert "/ui/login" in page.url
    page.fill("#login-token", "not-the-token-at-all")
    page.click("#login button")
    assert page.inner_text("#refused") == "Refused: wrong API token."
    page.fill("#login-token", shop.token)
    page.click("#login button")
    page.wait_for_url(f"{shop.url}/ui/events")
    cookie = next(c for c in context.cookies() if c["name"] == "eventflow_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # the cookie is a read pass, not the token: seen in a log, it cannot act
    assert cookie["value"] == read_pass(shop.token) != shop.token


def test_the_stream_and_the_pages_refuse_a_request_without_the_read_pass(shop: Shop) -> None:
    assert httpx.get(f"{shop.url}/ui/stream").status_code == 303
    for wrong in ("x" * 20, shop.token):  # the token itself is not the pass either
        refused = httpx.get(f"{shop.url}/ui/stream", cookies={"eventflow_token": wrong})
        assert refused.status_code == 303 and "refused=1" in refused.headers["location"]
        read = httpx.get(f"{shop.url}/api/pipelines", cookies={"eventflow_token": wrong})
        assert read.status_code == 403
    assert httpx.get(f"{shop.url}/api/pipelines", cookies=signed_in(shop)).status_code == 200


WRITES = [
    ("/api/pipelines/shop/pause", {"reason": "x"}),
    ("/api/pipelines/shop/resume", {"reason": "x"}),
    ("/api/pipelines/shop/rerun", {"reason": "x", "partition": "2026-11-20"}),
    ("/api/pipelines/shop/cancel", {"reason": "x", "partition": "2026-11-20"}),
    ("/api/datasets/orders/events", {"partition": "2026-11-20"}),
]


@pytest.mark.parametrize(("path", "body"), WRITES, ids=[w[0] for w in WRITES])
def test_no_cookie_ever_acts(shop: Shop, path: str, body: dict[str, str]) -> None:
    """Mutating endpoints take the bearer header only, whatever cookie comes along."""
    for cookie in (signed_in(shop), {"eventflow_token": shop.token}):
        acted = httpx.post(f"{shop.url}{path}", json=body, cookies=cookie)
        assert acted.status_code == 401, acted.text


def signed_in(shop: Shop) -> dict[str, str]:
    return {"eventflow_token": read_pass(shop.token)}


def test_the_sign_in_never_sends_the_browser_elsewhere(context: BrowserContext, shop: Shop) -> None:
    page = context.new_page()
    page.goto(f"{shop.url}/ui/login?next=https://example.org/")
    page.fill("#login-token", shop.token)
    page.click("#login button")
    page.wait_for_url(f"{shop.url}/ui/")


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://example.org/",
        "//example.org/",
        "/\\example.org",
        "\\\\example.org",
        "/\t/example.org",
        "/ui/\r\nSet-Cookie: x=1",
        "/api/pipelines",
        "ui/",
    ],
)
def test_a_sign_in_link_leads_only_to_a_page_of_the_ui(elsewhere: str) -> None:
    assert local(elsewhere) == "/ui/"
    assert local("/ui/runs/a%2Fb?x=1") == "/ui/runs/a%2Fb?x=1"


def test_the_link_dev_prints_signs_in(context: BrowserContext, shop: Shop) -> None:
    page: Page = context.new_page()
    page.goto(f"{shop.url}/ui/login#token={shop.token}")
    page.wait_for_url(f"{shop.url}/ui/")
    assert "#token" not in page.url


@pytest.fixture(scope="module")
def open_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    yield from start_shop(tmp_path_factory.mktemp("open"), open_reads=True)


def test_with_open_reads_pages_need_no_token(context: BrowserContext, open_shop: Shop) -> None:
    page = context.new_page()
    page.goto(f"{open_shop.url}/ui/events")
    assert page.url == f"{open_shop.url}/ui/events"
