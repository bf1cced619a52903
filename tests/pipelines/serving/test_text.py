"""User text on its way into headers and messages."""

from __future__ import annotations

import json

import pytest

from pipelines.serving.text import quote, warnings_header

NASTY = ["a\r\nb", "東京", "\u00c2L\ud9dc\udfff\u00ed", "emoji 🏎", "x" * 500, "tab\there", "\x00"]


@pytest.mark.parametrize("text", NASTY)
def test_quote_is_printable_ascii_and_reversible(text: str) -> None:
    q = quote(text, limit=1000)
    assert q.isascii() and q.isprintable()
    utf16 = "utf-16-le"  # a pair of lone surrogates reads back as the one character they code
    assert json.loads(q).encode(utf16, "surrogatepass") == text.encode(utf16, "surrogatepass")


@pytest.mark.parametrize("text", NASTY)
def test_warnings_header_is_a_valid_header_value(text: str) -> None:
    value = warnings_header([f"inputs not used: {text}", "second"])["X-F1-Warnings"]
    value.encode("latin-1")  # what the server stack needs
    assert value.isascii() and "\r" not in value and "\n" not in value
    assert all(" " <= c <= "~" for c in value) and len(value) <= 2000


def test_the_warnings_header_keeps_plain_text_and_cuts_long_text() -> None:
    plain = "no event given: using 2025 round 8"
    assert warnings_header([plain, "second"]) == {"X-F1-Warnings": f"{plain} | second"}
    assert len(warnings_header(["y" * 5000])["X-F1-Warnings"]) == 2000
    assert warnings_header([]) == {}
