"""The typed client (pipelines.client) against a server that wants an API key.

One `bentoml serve` with F1_API_KEY set, for the whole module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.client import AsyncF1Client, F1APIError, F1Client
from tests.service.servers import serving

pytestmark = pytest.mark.slow

KEY = "client-test-key-456"
EVENT = {"event": {"season": 2025, "round": 8}}


@pytest.fixture(scope="module")
def keyed_server(
    pinned_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log: Path = tmp_path_factory.mktemp("keyed") / "serve.log"
    with serving(pinned_env | {"F1_API_KEY": KEY}, log) as url:
        yield url


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
        assert "authorization" not in {k.lower() for k in f1._c.client.headers}
    monkeypatch.setenv("F1_API_KEY", KEY)
    with F1Client(keyed_server) as f1:
        assert f1._c.client.headers["authorization"] == f"Bearer {KEY}"
