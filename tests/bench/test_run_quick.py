"""`python -m bench.run --quick` end to end: real servers, real wrk, tiny runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_quick_benchmark_end_to_end(pinned_env: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        msg = "wrk not installed (make test and make bench install it)"
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"{msg}; CI=true: the harness test must run", pytrace=False)
        pytest.skip(msg)
    out = tmp_path / "results"
    md = tmp_path / "BENCHMARKS.md"
    cmd = [
        sys.executable,
        "-m",
        "bench.run",
        "--quick",
        "--no-train",
        "--store",
        os.environ["BENTOML_HOME"],  # the session's store (tests/conftest.py)
        "--features-tag",
        pinned_env["F1_FEATURES_MODEL"],
        "--stage1-tag",
        pinned_env["F1_STAGE1_MODEL"],
        "--stage2-tag",
        pinned_env["F1_STAGE2_MODEL"],
        "--scenarios",
        "full_c1_fresh,full_c64,full_c1_after_burst,jitter_c64,next_c64",
        "--out-dir",
        str(out),
        "--markdown",
        str(md),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "latest.json").read_text())
    assert results["quick"] is True
    assert results["identity"]["identical"], results["identity"]["summary"]
    assert results["models"]["stage1"] == pinned_env["F1_STAGE1_MODEL"]
    got = {(s["scenario"], s["server"]) for s in results["scenarios"]}
    assert got == {
        (sc, srv)
        for sc in ("full_c1_fresh", "full_c64", "full_c1_after_burst", "jitter_c64", "next_c64")
        for srv in ("bento", "original", "plain")
    }
    jitter = [s for s in results["scenarios"] if s["scenario"] in ("jitter_c64", "next_c64")]
    assert all(s["load_command"].split()[0].endswith("wrk") for s in results["scenarios"])
    # the next season's event (not in the data): answered, by every server alike
    assert all(s["load"]["failed"] == 0 for s in jitter if s["scenario"] == "next_c64")
    assert "next_season_20_drivers" in json.dumps(results["identity"])
    floor = results["floor"]
    assert floor["in_process_request_jittered_laps"]["mean_us"] > 0
    assert floor["numpy_features_both_stages_no_memo"]["mean_us"] > 0
    assert floor["placings_fresh_field"]["mean_us"] > 0
    for s in results["scenarios"]:
        assert s["load"]["requests"] > 0 and s["p50_ms"] is not None and s["p99_ms"] is not None
        assert s["load"]["failed"] == 0, s
    bento64 = next(
        s for s in results["scenarios"] if s["scenario"] == "full_c64" and s["server"] == "bento"
    )
    # every batchable API is listed; the explain ones are called only for "explain": true
    assert {"f1_stage1.predict_gap", "f1_stage2.predict_logit"} <= set(bento64["batch"])
    assert set(bento64["batch"]) <= {
        "f1_stage1.predict_gap",
        "f1_stage2.predict_logit",
        "f1_stage1.explain_gap",
        "f1_stage2.explain_logit",
    }
    for info in results["servers"].values():
        assert info["cold_start_s"] > 0 and info["rss_rest_mib"] > 50
    assert results["floor"]["model_floor"]["mean_us"] > 0
    text = md.read_text()
    assert "QUICK MODE" in text and "Bento/Original" in text
    assert len(list(out.glob("quick-*.json"))) == 1
