"""SQL text over the stored tables, shared by what reads them back (hunt, export).

Each reads events by a time range and, for one tenant's analyst, by tenant; and the
rules, the OCSF export and the engine must find the same host and port in an event's
``object`` (``rules/compiler._split_host``): one definition here, so the hunt and the
export cannot drift apart from each other.

Values always travel as query parameters (``{since:DateTime64(3)}``) except the rule
and mapping constants, which are written by :func:`literal`.

>>> literal("it's"), literal(5), literal(True), literal(float("nan"))
("'it\\\\'s'", '5', 'true', 'nan')
>>> where_range("ts", "acme")
'ts >= {since:DateTime64(3)} AND ts < {until:DateTime64(3)} AND tenant = {tenant:String}'
>>> "ep_" in inline("ep_host"), inline("ep_r1") == ENDPOINT_STEPS["ep_r1"]
(False, True)
"""

from __future__ import annotations

import re


def literal(value: object) -> str:
    """A SQL literal: text escaped (backslash and quote), numbers and booleans as such."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value == value else "nan"  # NaN is not equal to itself
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def where_range(time_column: str, tenant: str | None) -> str:
    """Rows of ``[since, until)``, and of the tenant when one is given (parameters
    ``since``, ``until``, ``tenant``)."""
    where = f"{time_column} >= {{since:DateTime64(3)}} AND {time_column} < {{until:DateTime64(3)}}"
    return where + (" AND tenant = {tenant:String}" if tenant else "")


ENDPOINT_STEPS = {
    "ep_r1": "if(position(object, '://') > 0, "
    "substring(object, position(object, '://') + 3), object)",
    "ep_rest": "arrayElement(splitByChar('@', splitByChar('/', ep_r1)[1]), -1)",
    "ep_bracket": "startsWith(ep_rest, '[')",
    "ep_tail": "if(position(ep_rest, ']') > 0, substring(ep_rest, position(ep_rest, ']') + 1), '')",
    "ep_host": "multiIf(ep_bracket, splitByChar(']', substring(ep_rest, 2))[1], "
    "countSubstrings(ep_rest, ':') = 1, splitByChar(':', ep_rest)[1], ep_rest)",
    "ep_port": "multiIf(ep_bracket, if(startsWith(ep_tail, ':'), substring(ep_tail, 2), ''), "
    "countSubstrings(ep_rest, ':') = 1, splitByChar(':', ep_rest)[2], '')",
}
"""The host and the port text of ``object``, step by step: the object without scheme
(``ep_r1``), without path and user (``ep_rest``), then a bracketed IPv6 address or
``host:port``. Each step names only earlier ones: an inner query may select them as
columns (the export), or :func:`inline` writes one out whole (the hunt)."""

_STEP = re.compile(r"\bep_\w+\b")


def inline(name: str) -> str:
    """A step of ``ENDPOINT_STEPS`` as one expression over ``object`` alone."""
    return _STEP.sub(lambda m: f"({inline(m[0])})", ENDPOINT_STEPS[name])
