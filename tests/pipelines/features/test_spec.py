"""The feature spec: names and order, rows filled by name, model/code mismatches named."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.features.spec import (
    LABELS,
    STAGE1,
    STAGE1_FORM,
    STAGE1_PRACTICE,
    STAGE1_UNBOOSTED,
    STAGE2,
    STAGE2_MONOTONE,
    STAGE2_UNBOOSTED,
    FeatureMismatch,
    FeatureSpec,
    label,
)


def test_rows_are_filled_and_read_by_name() -> None:
    spec = FeatureSpec("t", ("a", "b", "c"))
    rows = spec.rows(2)
    rows["c"] = [1.0, 2.0]
    rows["a"] = 5.0
    np.testing.assert_array_equal(rows.x[:, 2], [1.0, 2.0])
    np.testing.assert_array_equal(rows["a"], [5.0, 5.0])
    assert np.isnan(rows["b"]).all()  # unfilled: LightGBM's missing value
    with pytest.raises(KeyError):
        rows["nope"] = 1.0


def test_spec_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicated"):
        FeatureSpec("t", ("a", "a"))


def test_check_names_every_difference() -> None:
    spec = FeatureSpec("stage-x", ("a", "b", "c"), revision=3)
    spec.check(["a", "b", "c"], 3, "m:1")
    spec.check(["a", "b", "c"], None, "m:1")  # a booster file: names only
    with pytest.raises(FeatureMismatch) as exc:
        spec.check(["a", "b", "d"], 3, "m:1")
    assert "['c']" in str(exc.value) and "['d']" in str(exc.value) and "m:1" in str(exc.value)
    with pytest.raises(FeatureMismatch, match="another order"):
        spec.check(["b", "a", "c"], 3, "m:1")
    with pytest.raises(FeatureMismatch, match="revision 2"):
        spec.check(["a", "b", "c"], 2, "m:1")


def test_stage_specs() -> None:
    assert len(STAGE1) == len(set(STAGE1.names)) == 22
    # the inputs that only route or steer are in the specs (the feature code builds them)
    assert set(STAGE1_UNBOOSTED) <= set(STAGE1.names)
    assert set(STAGE2_UNBOOSTED) <= set(STAGE2.names)
    assert set(STAGE1_FORM) <= set(STAGE1.names) and "d_n_events" not in STAGE1_FORM
    assert not set(STAGE1_FORM) & {*STAGE1_PRACTICE, *STAGE1_UNBOOSTED}
    assert len(STAGE2) == len(set(STAGE2.names)) == 16
    neg = [n for n, c in zip(STAGE2.names, STAGE2_MONOTONE, strict=True) if c == -1]
    assert neg == ["grid", "q_gap_pct", "q_tm_gap"]


def test_every_feature_has_a_label_a_fan_understands() -> None:
    names = set(STAGE1.names) | set(STAGE2.names)
    missing = sorted(names - set(LABELS))
    assert not missing, f"add a label to features.spec.LABELS for {missing}"
    stale = sorted(set(LABELS) - names)
    assert not stale, f"labels of features that no longer exist: {stale}"
    for name in names:
        text = label(name)
        assert text == LABELS[name] and text.strip() == text and len(text) <= 60, name
        assert "_" not in text, f"{name}: a label is words, not an identifier"
    assert label("some_new_feature") == "some new feature"  # never a KeyError
