"""The console when its token expires: the gateway closes with 4001 and the page asks for a new token."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import redis
from playwright.sync_api import Page

from tests.browser import publish_texts, wait_last_line
from tests.support import AUTH_ENV, token
from wire import Keys, Publisher


def test_an_expired_token_asks_for_a_new_one_and_the_view_comes_back_with_it(
    page: Page, rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(**AUTH_ENV)
    pub = Publisher(rclient, Keys(prefix))
    publish_texts(pub, "kafka:a1", ["first line"])
    page.goto(f"{gw.base}/?token={token(ttl=4)}#s=kafka:a1")
    page.wait_for_selector("#conn[data-state=open]", timeout=15000)
    wait_last_line(page, "first line")
    page.wait_for_selector("#conn[data-state=expired]", timeout=15000)
    assert page.inner_text("#conn .conn-text") == "token expired"
    assert "token expired — paste a new token" in page.inner_text("#token-form")
    assert "reload with ?token=" in page.inner_text(".pane")
    fresh = token(ttl=600)
    page.fill("#token-form input[name=token]", fresh)
    page.click("#token-form button")
    page.wait_for_selector("#conn[data-state=open]", timeout=15000)
    url = urlparse(page.url)
    assert parse_qs(url.query)["token"] == [fresh] and "kafka:a1" in url.fragment
    wait_last_line(page, "first line")
    publish_texts(pub, "kafka:a1", ["after the new token"])
    wait_last_line(page, "after the new token")
