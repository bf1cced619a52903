"""The typed client (pipelines.client) against a server that wants an API key, and with
no server at all.

One `bentoml serve` with F1_API_KEY set, for the whole module.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.client import AsyncF1Client, F1APIError, F1Client, F1ConnectionError, F1Error
from tests.service.servers import ROOT, free_port, serving

pytestmark = pytest.mark.slow

KEY = "client-test-key-456"
EVENT = {"event": {"season": 2025, "round": 8}}


@pytest.fixture(scope="module")
def keyed_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keyed") / "serve.log"


@pytest.fixture(scope="module")
def keyed_server(pinned_env: dict[str, str], keyed_log: Path) -> Iterator[str]:
    with serving(pinned_env | {"F1_API_KEY": KEY}, keyed_log) as url:
        yield url


@pytest.fixture
def nobody() -> str:
    """A URL where nothing listens: a port the system just handed out, then closed."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key from the environment: neither ours nor BentoML's own fallback."""
    monkeypatch.delenv("F1_API_KEY", raising=False)
    monkeypatch.delenv("BENTO_CLOUD_API_KEY", raising=False)


def _assert_401(err: pytest.ExceptionInfo[F1APIError]) -> None:
    assert err.value.status == 401, err.value
    assert err.value.detail and err.value.detail[0]["loc"] == ["header", "authorization"]


def test_without_a_token_the_server_says_401(keyed_server: str, no_key_in_env: None) -> None:
    with F1Client(keyed_server) as f1:
        assert f1.is_ready()  # probes stay open
        assert f1.health()["status"] == "healthy"
        with pytest.raises(F1APIError) as err:
            f1.predict_full(EVENT)
        _assert_401(err)
        with pytest.raises(F1APIError) as err:
            f1.model_info()  # a GET: protected too
        _assert_401(err)


def test_a_wrong_token_is_401(keyed_server: str, no_key_in_env: None) -> None:
    with F1Client(keyed_server, token=KEY + "x") as f1, pytest.raises(F1APIError) as err:
        f1.predict_quali(EVENT)
    _assert_401(err)


def test_with_a_token_predictions_and_model_info_work(
    keyed_server: str, no_key_in_env: None, pinned_env: dict[str, str]
) -> None:
    with F1Client(keyed_server, token=KEY) as f1:
        full = f1.predict_full(EVENT)
        assert full.metadata.model_versions["stage1"] == pinned_env["F1_STAGE1_MODEL"]
        assert len(f1.predict_quali(EVENT)) > 0
        assert [r.predicted_rank for r in f1.predict_race(EVENT)][:1] == [1]
        assert f1.model_info()["stage1"]["feature_count"] > 0


def test_the_key_comes_from_f1_api_key_when_no_token_is_given(
    keyed_server: str, no_key_in_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("F1_API_KEY", KEY)  # after the import: read when the client is made
    with F1Client(keyed_server) as f1:
        assert f1.predict_full(EVENT).race_winner_predictions
        assert f1.model_info()["stage2"]


def test_async_client_authenticates_and_has_the_probes(
    keyed_server: str, no_key_in_env: None, pinned_env: dict[str, str]
) -> None:
    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with AsyncF1Client(keyed_server, token=KEY) as f1:
            out["ready"] = await f1.is_ready()
            out["health"] = await f1.health()
            out["info"] = await f1.model_info()
            out["full"] = await f1.predict_full(EVENT)
        async with AsyncF1Client(keyed_server) as anonymous:
            assert await anonymous.is_ready()
            try:
                await anonymous.model_info()
            except F1APIError as exc:
                out["anonymous"] = exc.status
            try:
                await anonymous.predict_full(EVENT)
            except F1APIError as exc:
                out["anonymous_predict"] = exc.status
        return out

    out = asyncio.run(run())
    assert out["ready"] is True
    assert out["health"]["models"]["features"]["tag"] == pinned_env["F1_FEATURES_MODEL"]
    assert out["info"]["stage1"]["feature_count"] > 0
    assert out["full"].race_winner_predictions
    assert out["anonymous"] == out["anonymous_predict"] == 401


def test_a_bentocloud_key_is_never_sent_to_an_f1_server(
    keyed_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BentoML's client falls back to BENTO_CLOUD_API_KEY when given no token; ours must
    not hand a cloud credential to whatever server the URL names."""
    monkeypatch.delenv("F1_API_KEY", raising=False)
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "cloud-secret")
    with F1Client(keyed_server) as f1:
        assert "authorization" not in {k.lower() for k in f1._http.headers}
    monkeypatch.setenv("F1_API_KEY", KEY)
    with F1Client(keyed_server) as f1:
        assert f1._http.headers["authorization"] == f"Bearer {KEY}"


def test_an_error_carries_status_body_and_the_servers_request_id(
    keyed_server: str, keyed_log: Path
) -> None:
    with F1Client(keyed_server, token=KEY) as f1, pytest.raises(F1APIError) as err:
        f1.predict_race({"event": {"season": 2025, "round": 29}})
    e = err.value
    assert e.status == 422 and e.detail[0]["loc"] == ["body", "event", "round"]
    assert e.body == {"error": e.error, "detail": e.detail}
    assert e.request_id and re.fullmatch(r"[0-9a-f]{16}", e.request_id), e.request_id
    assert e.request_id in str(e)
    deadline = time.monotonic() + 5  # the server logged this request under the same id
    while e.request_id not in keyed_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert e.request_id in keyed_log.read_text()


# the values the schema forbids and pydantic's lax mode used to convert
OTHER_TYPES = [
    ("/predict_full", {"event": {"season": 2025, "round": 8}, "explain": 0}),
    ("/predict_quali", {"event": {"season": 2025, "round": 8}, "explain": "true"}),
    ("/predict_full", {"event": {"season": "2025", "round": 8}}),
    ("/predict_race", {"event": {"season": 2025, "round": 8.0}}),
    ("/predict_race", {"event": {"season": 2025, "round": 8},
                       "drivers": [{"driver_id": 1, "grid_position": 1.0}]}),
    ("/predict_race", {"event": {"season": 2025, "round": 8},
                       "drivers": [{"driver_id": 1, "grid_position": "1"}]}),
    ("/predict_quali", {"drivers": [{"driver_id": 1, "practice": {"fp3": "71.2"}}]}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), OTHER_TYPES)
def test_the_client_refuses_locally_what_the_server_refuses(
    keyed_server: str, nobody: str, path: str, body: dict[str, Any]
) -> None:
    """Same status and detail as the server's answer, and nothing sent: a client with no
    server behind it refuses the same way."""
    auth = {"authorization": f"Bearer {KEY}"}
    server = httpx.post(f"{keyed_server}{path}", json=body, headers=auth, timeout=30)
    assert server.status_code == 400, server.text
    method = path.removeprefix("/")
    with F1Client(nobody) as f1, pytest.raises(F1APIError) as err:
        getattr(f1, method)(body)
    assert err.value.status == 400 and err.value.request_id is None
    assert [(d["loc"], d["msg"]) for d in err.value.detail] == [
        (d["loc"], d["msg"]) for d in server.json()["detail"]
    ]


NO_SERVER = "no F1 Predictor answering at {url}: start it with `make serve`"


def test_no_server_is_one_clear_line_from_a_typed_connection_error(nobody: str) -> None:
    with F1Client(nobody) as f1:
        assert f1.is_ready() is False
        for call in (lambda: f1.predict_full(EVENT), f1.health, f1.model_info):
            with pytest.raises(F1ConnectionError) as err:
                call()
            assert str(err.value) == NO_SERVER.format(url=nobody)
            assert isinstance(err.value, F1Error) and isinstance(err.value, ConnectionError)
            assert err.value.url == nobody and err.value.__cause__ is None

    async def run() -> tuple[bool, str]:
        async with AsyncF1Client(nobody + "/") as f1:
            ready = await f1.is_ready()
            try:
                await f1.predict_race(EVENT)
            except F1ConnectionError as exc:
                return ready, str(exc)
        return ready, "no error"

    assert asyncio.run(run()) == (False, NO_SERVER.format(url=nobody))


def _example(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = ROOT / "examples" / "client_example.py"
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env or dict(os.environ))  # fmt: skip


def test_the_example_says_one_line_and_fails_when_no_server_answers(nobody: str) -> None:
    out = _example(nobody)
    assert out.returncode != 0
    assert out.stderr == NO_SERVER.format(url=nobody) + "\n", out.stderr
    assert out.stdout == ""


def test_the_example_runs_against_a_server(keyed_server: str) -> None:
    out = _example(keyed_server, env=os.environ | {"F1_API_KEY": KEY})
    assert out.returncode == 0, out.stderr
    assert "win" in out.stdout and "422 ['body', 'event', 'round']" in out.stdout, out.stdout


def _client_examples() -> list[str]:
    """The Python blocks of README.md and docs/api.md that use the client."""
    blocks = []
    for doc in (ROOT / "README.md", ROOT / "docs" / "api.md"):
        found = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
        blocks += [b for b in found if "from pipelines.client import" in b]
    return blocks


def test_the_docs_client_examples_run(
    keyed_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = _client_examples()
    assert len(blocks) >= 2, "no Python client example in README.md or docs/api.md"
    monkeypatch.setenv("F1_API_KEY", KEY)
    for code in blocks:
        exec(code.replace("http://localhost:3000", keyed_server), {})
        printed = capsys.readouterr().out
        assert "422 [{'loc': ['body', 'event', 'round']" in printed, printed
