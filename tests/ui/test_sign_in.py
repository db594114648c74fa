"""Pages and their live stream need the token unless reads are open; the sign-in refuses a
wrong one; a link from `eventflow dev --ui` signs in by itself."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

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


def test_the_stream_and_the_pages_refuse_a_request_without_the_token(shop: Shop) -> None:
    assert httpx.get(f"{shop.url}/ui/stream").status_code in (303, 307)
    refused = httpx.get(f"{shop.url}/ui/stream", cookies={"eventflow_token": "x" * 20})
    assert refused.status_code == 303 and "refused=1" in refused.headers["location"]
    # a cookie never acts: mutating endpoints take the header only
    cookie = {"eventflow_token": shop.token}
    acted = httpx.post(f"{shop.url}/api/pipelines/shop/pause", json={"reason": "x"}, cookies=cookie)
    assert acted.status_code == 401


def test_the_sign_in_never_sends_the_browser_elsewhere(context: BrowserContext, shop: Shop) -> None:
    page = context.new_page()
    page.goto(f"{shop.url}/ui/login?next=https://example.org/")
    page.fill("#login-token", shop.token)
    page.click("#login button")
    page.wait_for_url(f"{shop.url}/ui/")


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
