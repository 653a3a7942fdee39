"""The syslog destination against a real rsyslogd (Debian's package): alerts over TCP
(octet counting) and TLS arrive each exactly once and read back field by field."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pipeline.config import ForwardDestination
from pipeline.outputs.base import Records
from pipeline.outputs.syslog.output import SyslogOutput
from pipeline.outputs.syslog.request_builder import message, octet_counted
from pipeline.siem import cef
from tests.outputs.alerts_for_tests import alerts, items
from tests.outputs.syslog.rsyslog import Rsyslog, available
from tests.siem.cef_parse import parse

needs_rsyslog = pytest.mark.skipif(not available(), reason="rsyslogd is not installed")


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    made = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    made.start()
    yield made
    made.stop()


def received(rsyslog: Rsyslog, inputname: str, count: int) -> list[list[str]]:
    deadline = time.monotonic() + 15
    while True:
        rows = [line.split("|", 4) for line in rsyslog.lines()]
        mine = [row for row in rows if row[3] == inputname]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.1)


@needs_rsyslog
@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_alerts_arrive_once_each_and_read_back(rsyslog: Rsyslog, protocol: str) -> None:
    dest = ForwardDestination(
        name=f"siem-{protocol}",
        type="syslog",
        format="cef",
        host="127.0.0.1",
        port=rsyslog.tcp_port if protocol == "tcp" else rsyslog.tls_port,
        protocol=protocol,
        ca_file=rsyslog.tls.ca,
    )
    output = SyslogOutput(dest, threading.Event())
    sent = alerts(300)
    for start in range(0, 300, 100):
        output.write(Records("forwarded", items(sent[start : start + 100])))
    output.close()
    rows = received(rsyslog, "plain" if protocol == "tcp" else "tls", 300)
    assert len(rows) == 300
    by_id = {}
    for hostname, app, msgid, _, msg in rows:
        header, extension = parse(msg.removeprefix("\ufeff"))
        by_id[extension["externalId"]] = (hostname, app, msgid, header, extension)
    assert len(by_id) == 300  # each exactly once
    for alert in sent:
        hostname, app, msgid, header, extension = by_id[alert.alert_id]
        assert (hostname, app, msgid) == (alert.sandbox_id, "auditpipe", alert.rule_id)
        assert header[4:6] == [alert.rule_id, alert.title]
        assert header[6] == str(cef.ALERT_SEVERITY[alert.severity])
        assert extension["cs1"] == alert.tenant and extension["cnt"] == str(alert.count)
        assert extension["cs3"] == ",".join(alert.evidence)


def test_header_fields_cannot_shift_and_frames_count_octets() -> None:
    alert = alerts(1)[0]
    hostile = type(alert)(**{**alert.__dict__, "sandbox_id": "sb 1\nx", "rule_id": ""})
    line = message(items([hostile])[0], "body é")
    assert line.split(b" ")[2:6] == [b"sb_1_x", b"auditpipe", b"-", b"-"]
    framed = octet_counted([line, b"two"])
    size, rest = framed.split(b" ", 1)
    assert int(size) == len(line) and rest[int(size) :] == b"3 two"
