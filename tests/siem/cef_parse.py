"""A CEF reader for the tests: splits a CEF line back into header and extension
following the specification's escaping, independently of ``pipeline/siem/cef.py``."""

from __future__ import annotations

import re

_KEY = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")


def parse(line: str) -> tuple[list[str], dict[str, str]]:
    header: list[str] = []
    current, i = [], 0
    while len(header) < 7:
        ch = line[i]
        if ch == "\\" and line[i + 1] in "\\|":
            current.append(line[i + 1])
            i += 2
        elif ch == "|":
            header.append("".join(current))
            current, i = [], i + 1
        else:
            current.append(ch)
            i += 1
    return header, _extension(line[i:])


def _extension(text: str) -> dict[str, str]:
    # A key starts after a space not inside an escape; "=" in values is always escaped,
    # so every unescaped "=" ends a key.
    starts = [m for m in _KEY.finditer(text) if not _escaped(text, m.end() - 1)]
    out: dict[str, str] = {}
    for n, match in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else len(text)
        out[match.group(1)] = _unescape(text[match.end() : end])
    return out


def _escaped(text: str, at: int) -> bool:
    slashes = 0
    while at - slashes - 1 >= 0 and text[at - slashes - 1] == "\\":
        slashes += 1
    return slashes % 2 == 1


def _unescape(value: str) -> str:
    return re.sub(
        r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value, flags=re.S
    )
