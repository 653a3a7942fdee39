"""A destination's records in its configured format (``forward.destinations[].format``):
OCSF, ECS, CEF or auditpipe's own record, one function per format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.rules.alerts import Alert
from pipeline.siem import cef, ecs, ocsf

Shape = Callable[[Alert], Any]

_ALERT_SHAPES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "ocsf": ocsf.alert,
    "ecs": ecs.alert,
    "cef": cef.alert,
    "native": lambda record: record,
}


def alert_shape(format_name: str) -> Shape:
    """The function that shapes an alert for ``format_name`` (a JSON-ready value, or a
    string for CEF)."""
    shape = _ALERT_SHAPES[format_name]
    return lambda alert: shape(alert.record())
