"""Alerts for the destination tests, with hostile values among them."""

from __future__ import annotations

from pipeline.outputs.forwarding.shapes import Item, from_alert
from pipeline.rules.alerts import Alert, make_alert


def alerts(n: int, title: str = "Read of /etc/shadow") -> list[Alert]:
    return [
        make_alert(
            f"CRED-{i % 7:03d}",
            f"{title} #{i} | a=b \\ c",
            ("low", "medium", "high", "critical")[i % 4],
            ("attack.credential_access", "attack.t1003.008"),
            f"tenant-{i % 3}",
            f"sb-{i}",
            1_795_860_000_000 + i,
            1_795_860_000_500 + i,
            1 + i % 3,
            [f"e{i}", f"e{i}-b"],
        )
        for i in range(n)
    ]


def items(batch: list[Alert]) -> list[Item]:
    """The alerts as the forwarder hands them to a destination."""
    return [from_alert(alert) for alert in batch]
