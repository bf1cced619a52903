"""The README and docs/*.md hold together: their links lead somewhere, and the requests
they show are the Swagger examples the tests send (or a body the API rejects)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.serving.schemas import EXAMPLES, QualiRequest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(md: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    heads = re.findall(r"^#+ (.+)$", md, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def _prose(md: str) -> str:
    """The text outside code blocks (a link-like string in an example is no link)."""
    return re.sub(r"^```.*?^```", "", md, flags=re.M | re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file_and_heading(doc: Path) -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", _prose(doc.read_text()))
    for link in [x for x in links if not x.startswith(("http://", "https://"))]:
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        assert target.exists(), link
        if anchor:
            assert anchor in _anchors(target.read_text()), link


def _bodies() -> list[dict[str, object]]:
    """Every JSON body a `curl ... -d '...'` in the docs sends."""
    found = []
    for doc in DOCS:
        for raw in re.findall(r"-d '(\{.*?\})'", doc.read_text(), flags=re.S):
            found.append(json.loads(raw))
    return found


def _without_session_type(body: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in body.items() if k != "session_type"}


def test_the_requests_the_docs_show_are_the_swagger_examples_or_rejected() -> None:
    """A body in the docs is one of `EXAMPLES` (which the Swagger UI offers and the
    service tests send; `session_type` is optional), or one the schema refuses (the
    docs' example of a 400)."""
    examples = [_without_session_type(e) for e in EXAMPLES.values()]
    bodies = _bodies()
    assert len(bodies) >= len(EXAMPLES)
    rejected = 0
    for body in bodies:
        if _without_session_type(body) in examples:
            continue
        with pytest.raises(ValidationError):
            QualiRequest.model_validate(body)
        rejected += 1
    assert rejected == 1
    shown = [_without_session_type(b) for b in bodies]
    assert all(e in shown for e in examples)  # every Swagger example is shown somewhere
