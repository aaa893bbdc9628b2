"""The console with authentication on: a token in the page's URL is traded for the cookie
and never travels in a URL again; when it expires the gateway closes with 4001 and the
page asks for a new one."""

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
    assert "token" not in parse_qs(url.query) and "kafka:a1" in url.fragment
    wait_last_line(page, "first line")
    publish_texts(pub, "kafka:a1", ["after the new token"])
    wait_last_line(page, "after the new token")


def test_a_token_in_the_page_url_is_traded_for_the_cookie_and_never_in_a_url_again(
    page: Page, rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(**AUTH_ENV)
    tok = token(("kafka:*",))
    sockets: list[str] = []
    requests: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("request", lambda req: requests.append(req.url))
    page.goto(f"{gw.base}/?token={tok}#s=kafka:secret")
    page.wait_for_selector("#conn[data-state=open]", timeout=15000)
    page.wait_for_function("() => document.querySelector('#sources .list .source, #sources .hint') !== null")
    publish_texts(Publisher(rclient, Keys(prefix)), "kafka:secret", ["seen with the cookie"])
    wait_last_line(page, "seen with the cookie")
    assert page.url == f"{gw.base}/#s=kafka:secret", "the token left the address bar"
    assert requests[0] == f"{gw.base}/?token={tok}"  # the page itself, which sets the cookie
    assert sockets and not [u for u in sockets + requests[1:] if "token" in u], "no later URL carries it"
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["value"], cookie["httpOnly"], cookie["sameSite"]) == (
        "tailgate_token",
        tok,
        True,
        "Strict",
    )
    page.click("#share")
    page.wait_for_selector("#toast >> text=Link copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == f"{gw.base}/#s=kafka:secret"
    page.reload()  # the cookie alone authenticates the reloaded page
    page.wait_for_selector("#conn[data-state=open]", timeout=15000)
    wait_last_line(page, "seen with the cookie")
