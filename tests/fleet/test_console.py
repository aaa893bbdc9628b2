"""The web console through HAProxy, under a sub-path, when the replica serving it dies."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser import PacedPublisher, numbers_around, wait_numbered_at_least, whole_view_after_a_reconnect
from tests.fleet.conftest import Fleet
from tests.support import metric
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
        serving = [r for r in fleet.replicas if metric(r, "tailgate_gateway_connections") == 1]
        assert len(serving) == 1, "one replica holds the page's WebSocket"
        serving[0].kill()
        wait_numbered_at_least(page, feeder.sent + 200)  # lines flow again, through another replica
    finally:
        total = feeder.stop()
    rows = whole_view_after_a_reconnect(page, total)
    assert len(numbers_around(rows, "resumed after line")) == 1, "the page said where it resumed"
