"""Podium and points probabilities from Stage-2's strengths: the Plackett-Luce model.

Stage-2 gives every car of a field a strength ``s`` (its win log-odds); the win
probability is the softmax, ``w_i / sum(w)`` with ``w = exp(s)``. Plackett-Luce extends
that to the whole finishing order: the winner is drawn in proportion to ``w``, second
place from the cars left in proportion to ``w``, and so on. Its first place *is* the
softmax, so a driver's win, podium and points chances come from one model and agree.

- Podium (top 3): exact, the sum over the ordered pairs and triples ahead, O(N^3).
- Top k (points = top 10): the exponential-race form of Plackett-Luce. Give car j an
  arrival time ``T_j ~ Exp(w_j)``; the order of arrival is Plackett-Luce. So

      P(i in top k) = integral over t of  w_i exp(-w_i t) P(fewer than k others by t) dt

  where the number of other cars arrived by ``t`` is Poisson-binomial with
  ``p_j(t) = 1 - exp(-w_j t)`` (a k-state recursion over the cars). In ``u = log t``
  the integrand is analytic and decays double-exponentially at both ends, where the
  trapezoid rule converges geometrically: with the step used here the error is below
  1e-12 (the tests compare with every finishing order enumerated). No sampling, no seed.

Not every car is classified: some retire. Plackett-Luce alone orders every car, so it put
a favourite on the podium ~0.95 of the time (2025 saw ~0.85) and in the points ~1.0, as
if it could not retire (points log loss per starter 0.67 in 2025, worse than a coin).
So with ``finish`` < 1 (Stage-2's ``finish_rate``: the share of starters classified in
its tuning seasons) every car but the winner is classified with that probability,
independently, and the podium and the points are the first 3 and 10 *classified* cars.
The win (the softmax: Stage-2 is fitted on who won, retirements included) is unchanged.
In the race form: the first arrival wins; a car arriving after ``a`` others takes a
top-k place if it is classified (``finish``) and at most k - 2 of the other ``a - 1``
are (binomial), so

      P(i in top k) = integral of  w_i exp(-w_i t) E[h_k(number of others by t)] dt,
      h_k(0) = 1,  h_k(a) = finish * P(Binomial(a - 1, finish) <= k - 2),

computed with the whole count distribution (an N-state recursion, podium and points in
one pass); the tests compare it with every finishing order and classification
enumerated.

Everything is computed over the whole field in a canonical order (by key), so a car's
numbers are the same whoever else a request names and however the field is listed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PODIUM = 3
POINTS = 10
"""Cars scoring points in a Grand Prix (2010 on)."""
MAX_SPREAD = 200.0
"""Strengths more than this below the field's best are raised to it: a weight of
e^-200 (1e-87) relative changes nothing measurable, keeps every weight and product of
three weights above float underflow, and bounds the integration range."""
STEP = 0.2
"""Trapezoid step in log-time (error ~ exp(-pi^2 / STEP) ~ 5e-15 relative)."""


@dataclass
class Placings:
    """Per car: probability of winning, of a podium, of scoring points (top 10)."""

    win: np.ndarray
    podium: np.ndarray
    points: np.ndarray


def weights(strength: np.ndarray) -> np.ndarray:
    """Plackett-Luce weights summing to 1 (= the softmax of the strengths)."""
    s = np.asarray(strength, dtype=float)
    s = np.maximum(s - s.max(), -MAX_SPREAD)
    w = np.exp(s)
    return w / w.sum()


def _others_sum(w: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Sum of the weights not excluded, added up directly (``1 - w_j - w_k`` would lose
    every digit when two cars hold nearly all the weight)."""
    return np.where(excluded, 0.0, w).sum(axis=-1)


def podium_probability(strength: np.ndarray) -> np.ndarray:
    """P(finishing 1st, 2nd or 3rd) per car, exactly (sums to min(3, N))."""
    w = weights(strength)
    n = len(w)
    if n <= PODIUM:
        return np.ones(n)
    eye = np.eye(n, dtype=bool)
    # first[j] = P(j wins); pair[j, i] = P(j first, i second)
    rest1 = _others_sum(w[None, :], eye)  # rest1[j] = sum of w over cars other than j
    pair = np.where(eye, 0.0, w[:, None] * w[None, :] / rest1[:, None])
    # triple[j, k, i] = P(j first, k second, i third)
    out2 = eye[:, None, :] | eye[None, :, :]  # [j, k, l]: l is j or k
    rest2 = _others_sum(w[None, None, :], out2)
    rest2 = np.where(eye, 1.0, rest2)  # j == k never happens (pair is 0 there)
    triple = pair[:, :, None] * w[None, None, :] / rest2[:, :, None]
    triple = np.where(out2, 0.0, triple)
    p = w + pair.sum(axis=0) + triple.sum(axis=(0, 1))
    return np.clip(p, 0.0, 1.0)


def top_k_probability(strength: np.ndarray, k: int, skip_below: float = 1e-16) -> np.ndarray:
    """P(finishing in the top ``k``) per car (sums to min(k, N)); see the module doc.

    ``skip_below``: the error allowed for not running the recursion on the earliest
    nodes (0: run it on every node)."""
    w = weights(strength)
    n = len(w)
    if k >= n:
        return np.ones(n)
    if k <= 0:
        return np.zeros(n)
    lo = math.log(1e-18 / w.max())  # below: every car's integrand < 1e-18
    # above: the k strongest of any car's rivals have all arrived (each but exp(-50)), so
    # no car can still finish in the top k; the weakest cars need not arrive at all
    rival = float(np.sort(w)[::-1][k])  # the (k+1)-th largest weight
    hi = math.log(50.0 / rival)
    u = np.arange(lo, hi + STEP, STEP)
    t = np.exp(u)
    wt = w[:, None] * t[None, :]
    stay = np.exp(-wt)  # P(car j not arrived by t)
    dens = wt * stay  # dt = t du; times P(fewer than k others by t), below
    # Before t_low that last factor is 1 within skip_below in the sum (k others arrived by t:
    # at most t^k / k!, the weights summing to 1), so the recursion, the costly part,
    # runs on the later nodes only (~50 of ~240 for a 20-car field and k = 10).
    t_low = (skip_below * math.factorial(k) * (k + 1)) ** (1.0 / (k + 1))
    late = int(np.searchsorted(t, t_low))
    dens[:, late:] *= _fewer_than_k_others(wt[:, late:], stay[:, late:], k)
    return np.clip(STEP * dens.sum(axis=1), 0.0, 1.0)


def _fewer_than_k_others(wt: np.ndarray, stay: np.ndarray, k: int) -> np.ndarray:
    """(car, node): P(fewer than ``k`` of the other cars arrived by the node's time)."""
    n, tn = wt.shape
    come = -np.expm1(-wt)  # P(car j arrived by t), accurate for small w t
    # truncated Poisson-binomial counts (0..k-1 arrivals) of the first j cars (pre)
    # and of the cars from j on (suf): leaving car i out is pre[i] * suf[i + 1]
    stay3, come3 = stay[:, :, None], come[:, :, None]
    pre = np.zeros((n + 1, tn, k))
    pre[0, :, 0] = 1.0
    for j in range(n):
        np.multiply(pre[j], stay3[j], out=pre[j + 1])
        pre[j + 1, :, 1:] += pre[j, :, :-1] * come3[j]
    suf = np.zeros((n + 1, tn, k))
    suf[n, :, 0] = 1.0
    for j in range(n - 1, -1, -1):
        np.multiply(suf[j + 1], stay3[j], out=suf[j])
        suf[j, :, 1:] += suf[j + 1, :, :-1] * come3[j]
    # P(fewer than k others by t) = sum_a pre_i[a] * P(suf_{i+1} <= k - 1 - a)
    below = np.cumsum(suf[1:], axis=2)[:, :, ::-1]
    return np.einsum("ita,ita->it", pre[:n], below)


def classified_top_k(strength: np.ndarray, ks: Sequence[int], finish: float) -> list[np.ndarray]:
    """P(among the first ``k`` classified cars) per car, for each ``k`` of ``ks``, when
    every car but the winner is classified with probability ``finish`` (module doc).
    The first place is the softmax whatever ``finish``; each sums to a little under
    min(k, N) when cars may retire."""
    if not 0.0 < finish <= 1.0:
        raise ValueError(f"finish must be in (0, 1], got {finish}")
    w = weights(strength)
    n = len(w)
    if n == 1:
        return [np.ones(1) if k >= 1 else np.zeros(1) for k in ks]
    h = _classified_weights(n, tuple(ks), float(finish))  # [k, a]: a = 0..n
    lo = math.log(1e-18 / w.max())  # below: every car's integrand < 1e-18
    # above: every car has arrived (each but exp(-50)); with retirements a car can take a
    # place however late it arrives, so the weakest car sets the end
    hi = math.log(50.0 / w.min())
    t = np.exp(np.arange(lo, hi + STEP, STEP))
    wt = w[:, None] * t[None, :]
    stay = np.exp(-wt)  # P(car j not arrived by t)
    come = -np.expm1(-wt)  # accurate for small w t
    dens = wt * stay  # dt = t du
    tn = len(t)
    # pre[j][a]: P(a of cars 0..j-1 arrived); suf[j][k, a]: E[h_k(a + arrivals of cars
    # j..n-1)]. Leaving car i out: E[h_k(others arrived)] = sum_a pre[i][a] suf[i+1][k, a]
    # (pre[j] is 0 past count j, and suf[j] is read only up to count j - 1: the loops
    # touch those counts alone)
    pre = np.zeros((n + 1, n + 1, tn))
    pre[0, 0] = 1.0
    for j in range(n):
        np.multiply(pre[j, : j + 1], stay[j], out=pre[j + 1, : j + 1])
        pre[j + 1, 1 : j + 2] += pre[j, : j + 1] * come[j]
    suf = np.zeros((n + 1, len(ks), n + 1, tn))
    suf[n] = h[:, :, None]
    for j in range(n - 1, 0, -1):
        np.multiply(suf[j + 1, :, :j], stay[j], out=suf[j, :, :j])
        suf[j, :, :j] += suf[j + 1, :, 1 : j + 1] * come[j]
    expect = np.einsum("iat,ikat->kit", pre[:n], suf[1:])
    out = STEP * np.einsum("it,kit->ki", dens, expect)
    return [np.clip(row, 0.0, 1.0) for row in out]


@lru_cache(maxsize=256)
def _classified_weights(n: int, ks: tuple[int, ...], finish: float) -> np.ndarray:
    """[k, a] for a = 0..n: h_k(a) of the module doc (a car arriving after ``a`` others
    takes a top-k place). Memoised: the same for every field of a size (read-only)."""
    # binom[m, c] = P(Binomial(m, finish) = c), m = 0..n
    binom = np.zeros((n + 1, n + 1))
    binom[0, 0] = 1.0
    for m in range(1, n + 1):
        binom[m] = binom[m - 1] * (1.0 - finish)
        binom[m, 1:] += binom[m - 1, :-1] * finish
    cdf = np.cumsum(binom, axis=1)
    h = np.zeros((len(ks), n + 1))
    for r, k in enumerate(ks):
        if k <= 0:
            continue
        h[r, 0] = 1.0
        if k >= 2:
            h[r, 1:] = finish * cdf[:n, min(k - 2, n)]
    h.flags.writeable = False
    return h


def placings(
    strength: np.ndarray,
    keys: Sequence[str],
    win: np.ndarray | None = None,
    finish: float = 1.0,
) -> Placings:
    """Win, podium and points probabilities over a field, ordered win <= podium <= points.

    ``keys`` (driver ids) fix the order the field is computed in, so the numbers do
    not depend on how the field is listed. ``win`` defaults to the softmax; pass the
    caller's own softmax to keep the ordering exact against it. ``finish``: the chance
    a car other than the winner is classified (1: every car is; module doc). Memoised
    on the strengths, keys and ``finish`` (~0.5-0.8 ms per 20-car field: every request
    about the same field asks it again).
    """
    s = np.asarray(strength, dtype=float)
    soft, pod, pts = (v.copy() for v in _podium_points(s.tobytes(), tuple(keys), float(finish)))
    w = soft if win is None else np.asarray(win, dtype=float)
    pod = np.maximum(pod, w)
    pts = np.maximum(pts, pod)
    return Placings(win=w, podium=pod, points=pts)


@lru_cache(maxsize=2048)
def _podium_points(
    strength: bytes, keys: tuple[str, ...], finish: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Softmax, podium and top-10 in the keys' order (bit-identical however listed)."""
    s = np.frombuffer(strength, dtype=float)
    order = sorted(range(len(s)), key=lambda i: keys[i])
    back = np.empty(len(s), dtype=int)
    back[order] = np.arange(len(s))
    sc = s[order]
    if finish < 1.0:
        pod, pts = classified_top_k(sc, (PODIUM, POINTS), finish)
    else:
        pod, pts = podium_probability(sc), top_k_probability(sc, POINTS)
    return weights(sc)[back], pod[back], pts[back]
