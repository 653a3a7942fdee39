"""Forwarder throughput: alerts/s from the alerts topic to a real rsyslogd over TCP (CEF)
and to the protocol-level HEC receiver (OCSF, with and without indexer acknowledgement).

    python benchmarks/forward.py [--alerts 50000] [--runs 3]

Needs the local stack (``auditpipe stack up``) and ``rsyslogd`` (Debian ``rsyslog``).
Each run publishes --alerts alerts to a fresh topic, starts ``auditpipe forward`` with
one destination, and times from the first record the receiver got to the last (so the
process start is not counted). The HEC receiver is the tests' Python stand-in
(``tests/outputs/splunk_hec/receiver.py``), in this process: its own cost is in the
figure, so a real Splunk is likely faster to send to. Medians of --runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.e2e import isolated
from pipeline.config import Settings, load_settings
from tests.integration.helpers import child_env, provision
from tests.integration.test_forward import publish, with_destinations
from tests.outputs.alerts_for_tests import alerts
from tests.outputs.splunk_hec.receiver import HecReceiver
from tests.outputs.syslog.rsyslog import Rsyslog


def rsyslog_count(rsyslog: Rsyslog) -> Callable[[], int]:
    def count() -> int:
        if not rsyslog.received.exists():
            return 0
        return rsyslog.received.read_bytes().count(b"\n")

    return count


def forwarded_per_s(
    base: Settings, home: Path, n: int, destination: dict[str, Any], count: Callable[[], int]
) -> float:
    tag = uuid.uuid4().hex[:8]
    settings = with_destinations(isolated(base, tag, home / tag), destination)
    provision(settings)
    publish(settings, alerts(n))
    before = count()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "forward", "--idle-timeout", "10"],
        env=child_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while count() == before:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{destination['name']}: nothing arrived")
            time.sleep(0.01)
        first, started = count(), time.monotonic()
        while count() < before + n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{destination['name']}: {count() - before} of {n} arrived")
            time.sleep(0.02)
        return (before + n - first) / (time.monotonic() - started)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = load_settings()
    home = Path(tempfile.mkdtemp(prefix="auditpipe-forward-bench-"))
    rsyslog = Rsyslog(home / "rsyslog")
    hec, hec_ack = HecReceiver(), HecReceiver(ack=True)
    token = home / "hec.token"
    token.write_text(hec.token)
    rsyslog.start()
    hec.start()
    hec_ack.start()
    hec_common = {"type": "splunk_hec", "token_file": str(token), "batch_records": 500}
    modes: dict[str, tuple[dict[str, Any], Callable[[], int]]] = {
        "syslog tcp, cef": (
            {"name": "rsyslog", "type": "syslog", "format": "cef", "port": rsyslog.tcp_port},
            rsyslog_count(rsyslog),
        ),
        "hec, ocsf": (
            {"name": "hec", "url": hec.url, **hec_common},
            lambda: len(hec.events),
        ),
        "hec+ack, ocsf": (
            {"name": "hec_ack", "url": hec_ack.url, "ack": True, **hec_common},
            lambda: len(hec_ack.events),
        ),
    }
    figures: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        for run in range(args.runs):
            for mode, (destination, count) in modes.items():
                figures[mode].append(forwarded_per_s(base, home, args.alerts, destination, count))
                print(f"run {run + 1}, {mode}: {figures[mode][-1]:,.0f} alerts/s", flush=True)
    finally:
        rsyslog.stop()
        hec.stop()
        hec_ack.stop()
    print(f"\nmedians of {args.runs} runs, {args.alerts:,} alerts each")
    for mode, values in figures.items():
        print(f"{mode:<16} {statistics.median(values):>9,.0f} alerts/s")


if __name__ == "__main__":
    main()
