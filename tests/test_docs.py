"""The manual's configuration reference (docs/configuration.md) is the one generated from
the config's docstrings."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import reference_table

README = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def test_the_configuration_reference_is_current() -> None:
    text = README.read_text()
    documented = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert documented == reference_table(), (
        "docs/configuration.md's reference is stale: replace it with `auditpipe config --reference`"
    )


def write_reference() -> None:
    """Regenerate the reference in docs/configuration.md (`make reference`)."""
    text = README.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{START}{reference_table()}\n{END}{after}")


if __name__ == "__main__":
    write_reference()
