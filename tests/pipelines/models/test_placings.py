"""Plackett-Luce placings: hand-computed fields, edge cases, sums, orderings, and the
quadrature against every finishing order enumerated and against Monte Carlo."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pipelines.models.placings import (
    MAX_SPREAD,
    placings,
    podium_probability,
    top_k_probability,
    weights,
)
from pipelines.models.stage2 import group_softmax


def _keys(n: int) -> list[str]:
    return [f"d{i:02d}" for i in range(n)]


def _enumerated(strength: np.ndarray, k: int) -> np.ndarray:
    """P(top k) by summing the probability of every finishing order."""
    w = weights(strength)
    n = len(w)
    out = np.zeros(n)
    for order in itertools.permutations(range(n)):
        p = 1.0
        for at, i in enumerate(order):
            p *= w[i] / w[list(order[at:])].sum()
        out[list(order[:k])] += p
    return out


def test_weights_are_the_softmax() -> None:
    s = np.array([1.2, -0.3, 0.0, 2.5])
    np.testing.assert_allclose(weights(s), group_softmax(s, np.zeros(4, int)), rtol=1e-15)


def test_hand_computed_top_two_of_three() -> None:
    """Weights 2:1:1. A misses the top two only if B and C both beat it:
    P = 2 * (1/4)(1/3) = 1/6. B is last if A then C (1/2 * 1/2) or C then A (1/4 * 2/3)."""
    p = top_k_probability(np.log([2.0, 1.0, 1.0]), 2)
    np.testing.assert_allclose(p, [5 / 6, 7 / 12, 7 / 12], atol=1e-12)


def test_hand_computed_podium_of_four() -> None:
    """Weights 3:1:1:1 (total 6). A is off the podium only when last: 3!(1/6)(1/5)(1/4)
    = 1/20. B is last in the orders of A, C, D: 2(1/12) + 2(1/20) + 2(1/40) = 19/60."""
    s = np.log([3.0, 1.0, 1.0, 1.0])
    expected = [19 / 20, 41 / 60, 41 / 60, 41 / 60]
    np.testing.assert_allclose(podium_probability(s), expected, atol=1e-15)
    np.testing.assert_allclose(top_k_probability(s, 3), expected, atol=1e-12)


def test_equal_strengths_share_evenly() -> None:
    for n in (4, 7, 20):
        p = placings(np.zeros(n), _keys(n))
        np.testing.assert_allclose(p.win, 1 / n)
        np.testing.assert_allclose(p.podium, 3 / n, atol=1e-12)
        np.testing.assert_allclose(p.points, min(10, n) / n, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_fields_everyone_is_on_the_podium(n: int) -> None:
    s = np.array([0.5, -1.0, 2.0][:n])
    p = placings(s, _keys(n))
    np.testing.assert_array_equal(p.podium, np.ones(n))
    np.testing.assert_array_equal(p.points, np.ones(n))
    assert p.win.sum() == pytest.approx(1.0)
    if n == 1:
        assert p.win.tolist() == [1.0]


def test_ten_or_fewer_cars_all_score() -> None:
    p = placings(np.linspace(-3, 3, 10), _keys(10))
    np.testing.assert_array_equal(p.points, np.ones(10))
    assert top_k_probability(np.zeros(5), 0).tolist() == [0.0] * 5


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("scale", [0.3, 2.0, 8.0, 25.0])
def test_quadrature_equals_every_order_enumerated(n: int, scale: float) -> None:
    s = np.random.default_rng([n, int(scale * 10)]).normal(scale=scale, size=n)
    for k in range(1, n + 1):
        np.testing.assert_allclose(top_k_probability(s, k), _enumerated(s, k), atol=1e-12)
    np.testing.assert_allclose(podium_probability(s), _enumerated(s, 3), atol=1e-14)


@pytest.mark.parametrize("n", list(range(1, 31)))
def test_sums_and_orderings_over_any_field(n: int) -> None:
    rng = np.random.default_rng(n)
    for scale in (0.5, 2.0, 6.0):
        s = rng.normal(scale=scale, size=n)
        p = placings(s, _keys(n), win=group_softmax(s, np.zeros(n, int)))
        assert p.win.sum() == pytest.approx(1.0, abs=1e-12)
        assert p.podium.sum() == pytest.approx(min(3, n), abs=1e-9)
        assert p.points.sum() == pytest.approx(min(10, n), abs=1e-9)
        assert (p.win <= p.podium).all() and (p.podium <= p.points).all()
        assert (p.points <= 1.0).all() and (p.win >= 0).all()
        # a stronger car is at least as likely to make the podium and the points
        order = np.argsort(-s)
        assert (np.diff(p.podium[order]) <= 1e-12).all()
        assert (np.diff(p.points[order]) <= 1e-12).all()


def test_top_k_sums_for_every_k() -> None:
    s = np.random.default_rng(3).normal(scale=3.0, size=22)
    for k in range(1, 23):
        assert top_k_probability(s, k).sum() == pytest.approx(min(k, 22), abs=1e-9)


def test_monte_carlo_agrees_with_the_exact_numbers() -> None:
    """Gumbel-max sampling of Plackett-Luce orders (the textbook simulation)."""
    rng = np.random.default_rng(11)
    s = rng.normal(scale=1.5, size=14)
    samples = 100_000
    order = np.argsort(-(s[None, :] + rng.gumbel(size=(samples, len(s)))), axis=1)
    rank = np.argsort(order, axis=1)
    mc_podium = (rank < 3).mean(axis=0)
    mc_points = (rank < 10).mean(axis=0)
    np.testing.assert_allclose(podium_probability(s), mc_podium, atol=0.006)
    np.testing.assert_allclose(top_k_probability(s, 10), mc_points, atol=0.006)


def test_extreme_strengths_stay_finite_and_exact() -> None:
    """A dominant car and cars far behind: no NaN, no division by a lost difference."""
    s = np.array([80.0, 79.5, 0.0, -40.0, -300.0, -300.0, 5.0])
    p = placings(s, _keys(7))
    for arr in (p.win, p.podium, p.points):
        assert np.isfinite(arr).all()
    assert p.podium.sum() == pytest.approx(3.0, abs=1e-9)
    assert p.podium[0] == pytest.approx(1.0) and p.podium[1] == pytest.approx(1.0)
    # third place is between the rest, by their own strengths (5 against 0, ...)
    third = math.exp(5.0) / (math.exp(5.0) + 1.0 + math.exp(-40.0))
    assert p.podium[6] == pytest.approx(third, abs=1e-9)
    assert p.podium[2] == pytest.approx(1.0 - third, abs=1e-9)
    # 380 behind the best: floored at MAX_SPREAD behind, still a (tiny) chance
    assert 0.0 < p.podium[4] <= 2 * math.exp(-MAX_SPREAD + 80.0)
    assert p.points.tolist() == [1.0] * 7
    wide = np.linspace(150.0, -150.0, 25)  # 12.5 log-odds between neighbours
    q = placings(wide, _keys(25))
    assert q.points.sum() == pytest.approx(10.0, abs=1e-9)
    np.testing.assert_allclose(q.points[:9], 1.0, atol=1e-9)
    assert q.points[9] == pytest.approx(1.0, abs=1e-5) and q.points[11] < 1e-5


def test_numbers_do_not_depend_on_how_the_field_is_listed() -> None:
    rng = np.random.default_rng(5)
    s = rng.normal(scale=2.0, size=20)
    keys = _keys(20)
    a = placings(s, keys)
    perm = rng.permutation(20)
    b = placings(s[perm], [keys[i] for i in perm])
    for name in ("win", "podium", "points"):
        got = dict(zip([keys[i] for i in perm], getattr(b, name).tolist(), strict=True))
        want = dict(zip(keys, getattr(a, name).tolist(), strict=True))
        assert got == want, name  # bit for bit


def test_memoised_answers_cannot_be_changed_by_a_caller() -> None:
    """The same field asked twice gets the memoised numbers; a caller writing into its
    answer does not change the next one."""
    s = np.array([1.2, 0.3, -0.5, 0.0, 2.1])
    keys = ["a", "b", "c", "d", "e"]
    first = placings(s, keys)
    first.podium[:] = -1.0
    first.points[:] = -1.0
    again = placings(s.copy(), list(keys))
    assert (again.podium >= again.win).all() and again.podium.sum() == pytest.approx(3.0)
    assert again.points.sum() == pytest.approx(5.0)


@pytest.mark.parametrize("spread", [0.3, 2.0, 8.0, 60.0])
@pytest.mark.parametrize("n,k", [(4, 1), (8, 3), (20, 10), (22, 10), (24, 23)])
def test_top_k_skipping_the_early_nodes_changes_nothing_measurable(
    spread: float, n: int, k: int
) -> None:
    # the recursion is skipped where fewer than k others have surely arrived (the
    # speed-up of the uncached path, issue 14); against running it on every node
    s = np.random.default_rng(20261202 + n * k).normal(0.0, spread, n)
    full = top_k_probability(s, k, skip_below=0.0)
    np.testing.assert_allclose(top_k_probability(s, k), full, rtol=0, atol=1e-15)
