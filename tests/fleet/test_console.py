"""The web console through HAProxy, under a sub-path, when the replica serving it dies."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser import PacedPublisher, download_rows, numbered, wait_last_line, wait_numbered_at_least
from tests.fleet.conftest import Fleet, scrape
from wire import Publisher


def test_the_console_goes_on_with_no_hole_and_no_duplicate_when_its_replica_is_killed(
    page: Page, pub: Publisher, start_fleet
) -> None:
    fleet: Fleet = start_fleet(3)
    # Under /tailgate/, as conf/haproxy.cfg also serves it: every URL the page uses is relative.
    page.goto(f"{fleet.balancer.base}/tailgate/#s=kafka:console")
    page.wait_for_selector("#conn[data-state=open]", timeout=15000)
    feeder = PacedPublisher(pub, "kafka:console", rate=300)
    feeder.start()
    try:
        wait_numbered_at_least(page, 200)
        serving = [r for r in fleet.replicas if scrape(r.base)["tailgate_gateway_connections"] == 1]
        assert len(serving) == 1, "one replica holds the page's WebSocket"
        serving[0].kill()
        wait_numbered_at_least(page, feeder.sent + 200)  # lines flow again, through another replica
    finally:
        total = feeder.stop()
    wait_last_line(page, numbered(total), timeout=20)
    rows = download_rows(page)
    lines = [row.split(" ", 1)[1] for row in rows if not row.startswith("#")]
    assert lines == [numbered(i) for i in range(1, total + 1)]
    assert any("connection lost" in r for r in rows), "the page noticed (and said) it moved"
