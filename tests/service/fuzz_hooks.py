"""schemathesis hooks for tests/service/test_fuzz.py: the project's own check on error bodies.

Loaded by `st run` through SCHEMATHESIS_HOOKS=tests.service.fuzz_hooks.
"""

from __future__ import annotations

from typing import Any

import schemathesis

LEAKS = ("Traceback", "site-packages", "pydantic.dev", "/work/")
"""Text an error body must never carry: internals, library URLs, local paths."""


@schemathesis.check
def errors_name_the_field(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx has an error message without internals, and body errors say where.

    405 is left out: the coverage phase also sends methods the document does not declare
    (TRACE, PUT ...), answered by the web framework's router, not by the API."""
    if 400 <= response.status_code < 500 and response.status_code != 405:
        try:
            body = response.json()
        except ValueError:
            raise AssertionError(f"a {response.status_code} body that is not JSON") from None
        assert isinstance(body.get("error"), str) and body["error"], body
        for leak in LEAKS:
            assert leak not in response.text, f"error body leaks {leak!r}"
        if response.status_code in (400, 422):
            assert body.get("detail"), body
            assert all("loc" in d and "msg" in d for d in body["detail"]), body
    return None
