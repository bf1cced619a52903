"""Plackett-Luce placings: hand-computed fields, edge cases, sums, orderings, and the
quadrature against every finishing order (and classification) enumerated and against
Monte Carlo."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import pytest

from pipelines.models.placings import (
    MAX_SPREAD,
    classified_top_k,
    placings,
    weights,
)
from pipelines.models.stage2 import group_softmax


def _keys(n: int) -> list[str]:
    return [f"d{i:02d}" for i in range(n)]


def _orders(strength: np.ndarray) -> Iterator[tuple[tuple[int, ...], float]]:
    """Every finishing order with its Plackett-Luce probability."""
    w = weights(strength)
    for order in itertools.permutations(range(len(w))):
        p = 1.0
        for at, i in enumerate(order):
            p *= w[i] / w[list(order[at:])].sum()
        yield order, p


def _top_k(strength: np.ndarray, k: int) -> np.ndarray:
    """P(top k) with every car classified: plain Plackett-Luce."""
    return classified_top_k(strength, (k,), 1.0)[0]


def _enumerated(strength: np.ndarray, k: int) -> np.ndarray:
    """P(top k) by summing the probability of every finishing order."""
    out = np.zeros(len(strength))
    for order, p in _orders(strength):
        out[list(order[:k])] += p
    return out


def test_weights_are_the_softmax() -> None:
    s = np.array([1.2, -0.3, 0.0, 2.5])
    np.testing.assert_allclose(weights(s), group_softmax(s, np.zeros(4, int)), rtol=1e-15)


def test_hand_computed_top_two_of_three() -> None:
    """Weights 2:1:1. A misses the top two only if B and C both beat it:
    P = 2 * (1/4)(1/3) = 1/6. B is last if A then C (1/2 * 1/2) or C then A (1/4 * 2/3)."""
    p = _top_k(np.log([2.0, 1.0, 1.0]), 2)
    np.testing.assert_allclose(p, [5 / 6, 7 / 12, 7 / 12], atol=1e-12)


def test_hand_computed_podium_of_four() -> None:
    """Weights 3:1:1:1 (total 6). A is off the podium only when last: 3!(1/6)(1/5)(1/4)
    = 1/20. B is last in the orders of A, C, D: 2(1/12) + 2(1/20) + 2(1/40) = 19/60."""
    s = np.log([3.0, 1.0, 1.0, 1.0])
    expected = [19 / 20, 41 / 60, 41 / 60, 41 / 60]
    np.testing.assert_allclose(_top_k(s, 3), expected, atol=1e-12)
    np.testing.assert_allclose(placings(s, _keys(4)).podium, expected, atol=1e-12)


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
    assert _top_k(np.zeros(5), 0).tolist() == [0.0] * 5


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("scale", [0.3, 2.0, 8.0, 25.0])
def test_quadrature_equals_every_order_enumerated(n: int, scale: float) -> None:
    s = np.random.default_rng([n, int(scale * 10)]).normal(scale=scale, size=n)
    ks = list(range(1, n + 1))
    for k, got in zip(ks, classified_top_k(s, ks, 1.0), strict=True):
        np.testing.assert_allclose(got, _enumerated(s, k), atol=1e-12)


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
    ks = list(range(1, 23))
    for k, p in zip(ks, classified_top_k(s, ks, 1.0), strict=True):
        assert p.sum() == pytest.approx(min(k, 22), abs=1e-9)


def test_monte_carlo_agrees_with_the_exact_numbers() -> None:
    """Gumbel-max sampling of Plackett-Luce orders (the textbook simulation)."""
    rng = np.random.default_rng(11)
    s = rng.normal(scale=1.5, size=14)
    samples = 100_000
    order = np.argsort(-(s[None, :] + rng.gumbel(size=(samples, len(s)))), axis=1)
    rank = np.argsort(order, axis=1)
    mc_podium = (rank < 3).mean(axis=0)
    mc_points = (rank < 10).mean(axis=0)
    pod, pts = classified_top_k(s, (3, 10), 1.0)
    np.testing.assert_allclose(pod, mc_podium, atol=0.006)
    np.testing.assert_allclose(pts, mc_points, atol=0.006)


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


# ------------------------------------------------- cars other than the winner may retire


def _enumerated_classified(strength: np.ndarray, k: int, finish: float) -> np.ndarray:
    """P(among the first k classified) by summing over every finishing order and every
    classification of the cars behind the winner (the winner is always classified)."""
    n = len(strength)
    out = np.zeros(n)
    for order, p in _orders(strength):
        for flags in itertools.product((False, True), repeat=n - 1):
            q = p * math.prod(finish if f else 1.0 - finish for f in flags)
            classified = [order[0]] + [c for c, f in zip(order[1:], flags, strict=True) if f]
            out[classified[:k]] += q
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("scale", [0.3, 2.0, 8.0, 25.0])
@pytest.mark.parametrize("finish", [0.5, 0.85, 1.0])
def test_classified_places_equal_every_order_and_retirement_enumerated(
    n: int, scale: float, finish: float
) -> None:
    s = np.random.default_rng([n, int(scale * 10), int(finish * 100)]).normal(scale=scale, size=n)
    ks = list(range(0, n + 2))
    for k, got in zip(ks, classified_top_k(s, ks, finish), strict=True):
        np.testing.assert_allclose(got, _enumerated_classified(s, k, finish), atol=1e-12)


def test_classified_places_hand_computed() -> None:
    """Two cars, weights 3:1, each non-winner classified 0.8: the podium is the winner
    plus the other if classified: A 3/4 + 1/4 * 0.8 = 0.95, B 1/4 + 3/4 * 0.8 = 0.85."""
    pod, first = classified_top_k(np.log([3.0, 1.0]), (3, 1), 0.8)
    np.testing.assert_allclose(pod, [0.95, 0.85], atol=1e-12)
    np.testing.assert_allclose(first, [0.75, 0.25], atol=1e-12)


def test_retirements_take_places_from_the_favourites_and_give_them_to_the_rest() -> None:
    s = np.linspace(3.0, -3.0, 20)
    pod1, pts1 = classified_top_k(s, (3, 10), 1.0)
    pod, pts = classified_top_k(s, (3, 10), 0.85)
    win = weights(s)
    assert pod[0] < pod1[0] and pts[0] < pts1[0]  # the favourite may retire
    assert pod[-1] > pod1[-1] and pts[-1] > pts1[-1]  # the back of the field gains
    assert (pod >= win - 1e-15).all() and (pts >= pod - 1e-15).all()
    # sums: the winner plus the classified others, at most 2 (9) of them
    assert 2.99 < pod.sum() < 3.0 and 9.99 < pts.sum() < 10.0
    # a stronger car is at least as likely to be on the podium and in the points
    assert (np.diff(pod) <= 1e-12).all() and (np.diff(pts) <= 1e-12).all()


def test_monte_carlo_agrees_with_the_classified_numbers() -> None:
    """Gumbel-max orders with each car behind the winner classified at 0.85."""
    rng = np.random.default_rng(12)
    s = rng.normal(scale=1.5, size=14)
    samples = 100_000
    order = np.argsort(-(s[None, :] + rng.gumbel(size=(samples, len(s)))), axis=1)
    kept = rng.random((samples, len(s))) < 0.85
    kept[:, 0] = True  # the winner (first in each order) is classified
    classified = np.cumsum(kept, axis=1)  # places among the classified, by order
    pod = np.zeros(len(s))
    pts = np.zeros(len(s))
    rows = np.arange(samples)[:, None]
    np.add.at(pod, order, (kept & (classified <= 3)).astype(float)[rows, np.arange(len(s))])
    np.add.at(pts, order, (kept & (classified <= 10)).astype(float)[rows, np.arange(len(s))])
    got_pod, got_pts = classified_top_k(s, (3, 10), 0.85)
    np.testing.assert_allclose(got_pod, pod / samples, atol=0.006)
    np.testing.assert_allclose(got_pts, pts / samples, atol=0.006)


def test_placings_use_the_finish_rate_and_memoise_it_apart() -> None:
    s = np.array([1.2, 0.3, -0.5, 0.0, 2.1])
    keys = ["a", "b", "c", "d", "e"]
    every = placings(s, keys)
    some = placings(s, keys, finish=0.85)
    np.testing.assert_allclose(some.win, every.win)
    assert some.podium.sum() < every.podium.sum() == pytest.approx(3.0)
    np.testing.assert_allclose(some.podium, classified_top_k(s, (3,), 0.85)[0], atol=1e-15)


@pytest.mark.parametrize("finish", [0.0, -0.1, 1.5])
def test_a_finish_rate_outside_zero_to_one_is_refused(finish: float) -> None:
    with pytest.raises(ValueError, match="finish"):
        classified_top_k(np.zeros(4), (3,), finish)


def test_classified_places_stay_finite_and_exact_for_extreme_strengths() -> None:
    """Cars 300 behind (clipped at MAX_SPREAD) stretch the integral to the weakest car's
    arrival: still finite and equal to every order and retirement enumerated (k < N, the
    integral), and for k >= N the closed form (each car classified at most ``finish``)."""
    s = np.array([80.0, 79.5, 0.0, -40.0, -300.0, 5.0])
    ks = (1, 2, 3, 5, 10)
    got = classified_top_k(s, ks, 0.85)
    for k, p in zip(ks, got, strict=True):
        assert np.isfinite(p).all()
        np.testing.assert_allclose(p, _enumerated_classified(s, k, 0.85), atol=1e-12)
    win = weights(s)
    np.testing.assert_allclose(got[-1], win + (1.0 - win) * 0.85, atol=1e-15)
    assert 2.99 < got[2].sum() < 3.0
