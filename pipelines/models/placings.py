"""Podium and points probabilities from Stage-2's strengths ``s`` (win log-odds): the
Plackett-Luce model on ``w = exp(s)``, whose first place is the softmax. Every car but
the winner is classified with probability ``finish``; the podium and the points are the
first 3 and 10 classified cars.

Computed in its exponential-race form: car j arrives at ``T_j ~ Exp(w_j)``, so

      P(i in top k) = integral over t of  w_i exp(-w_i t) E[h_k(others arrived by t)] dt,
      h_k(0) = 1,  h_k(a) = finish * P(Binomial(a - 1, finish) <= k - 2),

the others arrived by ``t`` Poisson-binomial with ``p_j(t) = 1 - exp(-w_j t)``. The
trapezoid rule in ``u = log t`` converges geometrically (error below 1e-12). Computed
over the whole field in a canonical order (by key): a car's numbers never depend on who
else a request names.
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
"""Strengths more than this below the field's best are raised to it (no weight underflows)."""
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
    return np.asarray(w / w.sum())


def classified_top_k(strength: np.ndarray, ks: Sequence[int], finish: float) -> list[np.ndarray]:
    """P(among the first ``k`` classified cars) per car, for each ``k`` of ``ks``, when
    every car but the winner is classified with probability ``finish`` (module doc)."""
    if not 0.0 < finish <= 1.0:
        raise ValueError(f"finish must be in (0, 1], got {finish}")
    w = weights(strength)
    n = len(w)
    # k >= N: the winner and each other car classified score; k <= 0: none
    every = np.ones(n) if finish == 1.0 else w + (1.0 - w) * finish
    closed = {k: every if k >= n else np.zeros(n) for k in ks if k >= n or k <= 0}
    open_ks = tuple(k for k in ks if k not in closed)
    if not open_ks:
        return [closed[k].copy() for k in ks]
    h = _classified_weights(n, open_ks, float(finish))  # [k, a]: a = 0..n
    lo = math.log(1e-18 / w.max())  # below: every car's integrand < 1e-18
    # above: every car has arrived (each but exp(-50)), the weakest setting the end
    hi = math.log(50.0 / w.min())
    t = np.exp(np.arange(lo, hi + STEP, STEP))
    wt = w[:, None] * t[None, :]
    stay = np.exp(-wt)  # P(car j not arrived by t)
    come = -np.expm1(-wt)  # accurate for small w t
    dens = wt * stay  # dt = t du
    tn = len(t)
    # pre[j][a]: P(a of cars 0..j-1 arrived); suf[j][k, a]: E[h_k(a + arrivals of cars
    # j..n-1)]. Leaving car i out: E[h_k(others arrived)] = sum_a pre[i][a] suf[i+1][k, a]
    pre = np.zeros((n + 1, n + 1, tn))
    pre[0, 0] = 1.0
    for j in range(n):
        np.multiply(pre[j, : j + 1], stay[j], out=pre[j + 1, : j + 1])
        pre[j + 1, 1 : j + 2] += pre[j, : j + 1] * come[j]
    suf = np.zeros((n + 1, len(open_ks), n + 1, tn))
    suf[n] = h[:, :, None]
    for j in range(n - 1, 0, -1):
        np.multiply(suf[j + 1, :, :j], stay[j], out=suf[j, :, :j])
        suf[j, :, :j] += suf[j + 1, :, 1 : j + 1] * come[j]
    expect = np.einsum("iat,ikat->kit", pre[:n], suf[1:])
    out = dict(zip(open_ks, STEP * np.einsum("it,kit->ki", dens, expect), strict=True))
    return [closed[k].copy() if k in closed else np.clip(out[k], 0.0, 1.0) for k in ks]


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
    for r, k in enumerate(ks):  # k >= 1 (the caller answers k <= 0 itself)
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
    """Win, podium and points probabilities over a field, ordered win <= podium <= points
    (``keys``, driver ids, fix the order computed in; ``win`` defaults to the softmax)."""
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
    back = np.argsort(order)  # the inverse permutation
    sc = s[order]
    pod, pts = classified_top_k(sc, (PODIUM, POINTS), finish)
    return weights(sc)[back], pod[back], pts[back]
