"""When an integration test fails, its report carries the tail of every worker log the
test started (CI keeps only pytest's output, and a stalled worker explains itself
there); after every test, the workers it started are gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.helpers import STARTED_WORKERS

LOG_TAIL_LINES = 150


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "call" and report.failed:
        for worker in STARTED_WORKERS:
            lines = worker.log().splitlines()[-LOG_TAIL_LINES:]
            title = f"{worker.log_path.name} (last {len(lines)} lines)"
            report.sections.append((title, "\n".join(lines)))
    if report.when == "teardown":
        for worker in STARTED_WORKERS:
            worker.kill()  # a test that failed half-way leaves none running
        STARTED_WORKERS.clear()
