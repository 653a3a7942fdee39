"""The output of each destination type (each in its folder under ``outputs/``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pipeline.config import ForwardDestination
from pipeline.outputs.http.output import HttpOutput
from pipeline.outputs.splunk_hec.output import HecOutput
from pipeline.outputs.syslog.output import SyslogOutput

BUILDERS: dict[str, Callable[[ForwardDestination, threading.Event], Any]] = {
    "splunk_hec": HecOutput,
    "syslog": SyslogOutput,
    "http": HttpOutput,
}


def build(
    dest: ForwardDestination, stopping: threading.Event
) -> HecOutput | SyslogOutput | HttpOutput:
    output: HecOutput | SyslogOutput | HttpOutput = BUILDERS[dest.type](dest, stopping)
    return output
