"""README's configuration reference is the one generated from the config's docstrings."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import reference_table

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def test_readme_configuration_reference_is_current() -> None:
    text = README.read_text()
    documented = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert documented == reference_table(), (
        "README's configuration reference is stale: replace it with `auditpipe config --reference`"
    )


def write_reference() -> None:
    """Regenerate README's reference (`make docs`)."""
    text = README.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{START}{reference_table()}\n{END}{after}")


if __name__ == "__main__":
    write_reference()
