"""User text on its way into a header, a log line or a message: always escaped."""

from __future__ import annotations

import json
from collections.abc import Sequence


def quote(text: str, limit: int = 64) -> str:
    """User text made safe for a header, a log line or a message: JSON-quoted ASCII (CR/LF,
    control characters, non-ASCII and lone surrogates escaped), cut to ``limit`` chars."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return json.dumps(cut, ensure_ascii=True)


def warnings_header(warnings: Sequence[str]) -> dict[str, str]:
    """``X-F1-Warnings`` for a response (the full text is in the body where there is one):
    printable ASCII only (what HTTP/1.1 servers accept), at most 2000 characters."""
    if not warnings:
        return {}
    text = " | ".join(warnings).encode("ascii", "backslashreplace").decode("ascii")
    return {"X-F1-Warnings": "".join(c if " " <= c <= "~" else "?" for c in text)[:2000]}
