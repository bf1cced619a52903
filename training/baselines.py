"""NOTES.md's baselines: Stage-1's ``practice_ratio``, ``quick_lgbm_gap`` and (a weekend ahead)
``recent_form``; Stage-2's in ``Stage2Baselines``. The quick LightGBMs train on seasons <= S-2
and stop early on S-1 (S: the test season); the rest fit on seasons <= S-1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from pipelines.f1db.parse import Tables, team_lineage
from pipelines.features.history import pre_quali_practice
from pipelines.features.spec import STAGE1, STAGE2, STAGE2_UNBOOSTED
from training.datasets import StageData

QUICK_LGBM_PARAMS: dict[str, Any] = {
    "objective": "l1",
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 0,
    "num_threads": 1,
    "verbosity": -1,
    "deterministic": True,
}
QUICK_EARLY_STOPPING = 200  # rounds without improvement on S-1 before stopping
QUICK_MAX_ROUNDS = 5000
ROLL_CLIP = 7.0  # qualifying gaps are clipped at 7 % in the rolling means

QUICK_PRACTICE = ("fp1", "fp2", "fp3")
QUICK_CATEGORICAL = ("circuit", "circuit_type")
QUICK_FEATURES: tuple[str, ...] = (
    *(f"{s}_{k}" for s in QUICK_PRACTICE for k in ("gap", "rank")),
    *("best_gap", "best_rank", "last_gap", "last_rank", "sessions_run", "practice_laps"),
    *("team_best_gap", "teammate_diff", "d_gap_mean1", "d_gap_mean3", "d_gap_mean5"),
    *("d_pos_mean5", "t_gap_mean1", "t_gap_mean3", "t_gap_mean5", "d_minus_t_mean5"),
    *QUICK_CATEGORICAL,
    *("course_length", "turns", "sprint", "season", "round"),
)


def _practice_block(t: Tables) -> pd.DataFrame:
    """Per (race, driver): the pre-qualifying practice features of the quick LightGBM."""
    p = pre_quali_practice(t).dropna(subset=["time_s"])
    order = {s: i for i, s in enumerate(("fp1", "fp2", "fp3", "sq"))}
    p = p.assign(
        gap=(p["time_s"] / p.groupby(["race_id", "session"])["time_s"].transform("min") - 1.0)
        * 100.0,
        rank=p.groupby(["race_id", "session"])["time_s"].rank(method="min"),
        k=p["session"].map(order),
    ).sort_values(["race_id", "driver_id", "k"])
    keys = ["race_id", "driver_id"]
    wide = p[p["session"].isin(QUICK_PRACTICE)].pivot_table(
        index=keys, columns="session", values=["gap", "rank"], aggfunc="min"
    )
    wide.columns = [f"{s}_{v}" for v, s in wide.columns]
    g = p.groupby(keys)
    out = pd.DataFrame(
        {
            "best_gap": g["gap"].min(),
            "best_rank": g["rank"].min(),
            "last_gap": g["gap"].last(),
            "last_rank": g["rank"].last(),
            "sessions_run": g["session"].nunique().astype(float),
            "practice_laps": g["laps"].sum(min_count=1),
        }
    ).join(wide)
    return out.reset_index()


def _rolling_prev(s: pd.Series, by: pd.Series, n: int) -> pd.Series:
    """Mean of the previous ``n`` values per key (the current one excluded)."""
    return s.groupby(by).transform(lambda v: v.shift(1).rolling(n, min_periods=1).mean())


def quick_features(t: Tables, rows: pd.DataFrame) -> pd.DataFrame:
    """The quick LightGBM's features for ``rows``: practice before qualifying, earlier form."""
    races = t.races.set_index("race_id")
    lineage = team_lineage(t.constructors)
    # form: every qualifying session in the tables, in date order
    q = t.qualifying.dropna(subset=["best_s"])[
        ["race_id", "driver_id", "constructor_id", "best_s", "position"]
    ]
    q = q.assign(
        date=q["race_id"].map(races["date"]),
        gap=((q["best_s"] / q.groupby("race_id")["best_s"].transform("min") - 1.0) * 100.0).clip(
            upper=ROLL_CLIP
        ),
        team=q["constructor_id"].map(lambda c: lineage.get(c, c)),
    ).sort_values(["date", "race_id"], kind="stable")
    form = q[["race_id", "driver_id"]].copy()
    for n in (1, 3, 5):
        form[f"d_gap_mean{n}"] = _rolling_prev(q["gap"], q["driver_id"], n)
    form["d_pos_mean5"] = _rolling_prev(q["position"].astype(float), q["driver_id"], 5)
    team = (
        q.groupby(["team", "race_id"], as_index=False)
        .agg(gap=("gap", "mean"), date=("date", "first"))
        .sort_values(["date", "race_id"], kind="stable")
    )
    for n in (1, 3, 5):
        team[f"t_gap_mean{n}"] = _rolling_prev(team["gap"], team["team"], n)
    form = form.merge(q[["race_id", "driver_id", "team"]], on=["race_id", "driver_id"]).merge(
        team.drop(columns=["gap", "date"]), on=["team", "race_id"], how="left"
    )
    form["d_minus_t_mean5"] = form["d_gap_mean5"] - form["t_gap_mean5"]

    out = rows[["race_id", "driver_id", "constructor_id"]].reset_index(drop=True)
    out = out.merge(_practice_block(t), on=["race_id", "driver_id"], how="left")
    out = out.merge(form.drop(columns=["team"]), on=["race_id", "driver_id"], how="left")
    # team's best practice gap and the teammate difference, over the rows' teams
    tb = out.groupby(["race_id", "constructor_id"])["best_gap"]
    out["team_best_gap"] = tb.transform("min")
    total, count = tb.transform("sum"), tb.transform("count")
    own = out["best_gap"].notna()
    mates = count - own
    mate_mean = (total - out["best_gap"].fillna(0.0)) / mates.where(mates > 0)
    out["teammate_diff"] = out["best_gap"] - mate_mean
    ev = races.loc[out["race_id"]]
    for c in ("course_length", "turns", "season", "round"):
        out[c] = ev[c].to_numpy(float)
    out["sprint"] = ev["is_sprint"].to_numpy(float)
    frame = out.reindex(columns=list(QUICK_FEATURES))  # a practice session nobody ran: NaN
    for c, source in (("circuit", "circuit_id"), ("circuit_type", "circuit_type")):
        levels = sorted(races[source].astype(str).unique())  # the same codes in every split
        frame[c] = pd.Categorical(ev[source].astype(str).to_numpy(), categories=levels)
    return frame


def fit_quick_lgbm(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_valid: pd.DataFrame,
    y_valid: np.ndarray,
    params: dict[str, Any],
) -> lgb.Booster:
    """NOTES.md's recipe: the given parameters, early stopping on the validation season."""
    train = lgb.Dataset(x_train, label=y_train, free_raw_data=True)
    valid = lgb.Dataset(x_valid, label=y_valid, reference=train)
    return lgb.train(
        params,
        train,
        num_boost_round=QUICK_MAX_ROUNDS,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(QUICK_EARLY_STOPPING, verbose=False)],
    )


def practice_ratio(train: StageData, test: StageData) -> tuple[np.ndarray, np.ndarray]:
    """Driver's best practice lap x the circuit's typical quali/practice ratio."""
    tm = train.meta
    ratio = (tm["best_s"] / tm["best_practice_s"]).replace([np.inf, -np.inf], np.nan)
    by_layout = ratio.groupby(tm["layout_id"]).median()
    overall = float(ratio.median())
    m = test.meta
    r = m["layout_id"].map(by_layout).fillna(overall).to_numpy()
    pred = m["best_practice_s"].to_numpy() * r
    # drivers without practice get the field's median prediction
    by_race = pd.Series(pred).groupby(m["race_id"].to_numpy())
    pred = np.where(np.isnan(pred), by_race.transform("median").to_numpy(), pred)
    best = pd.Series(pred).groupby(m["race_id"].to_numpy()).transform("min").to_numpy()
    return pred, np.asarray((pred / best - 1.0) * 100.0)


def quick_lgbm_gap(
    tables: Tables, train: StageData, valid: StageData, test: StageData, pole: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """NOTES.md's quick LightGBM on the gap to pole; time = the pole estimate x (1 + gap)."""
    feats = quick_features(tables, pd.concat([train.meta, valid.meta, test.meta]))
    n_tr, n_va = len(train.y), len(valid.y)
    booster = fit_quick_lgbm(
        feats.iloc[:n_tr], train.y, feats.iloc[n_tr : n_tr + n_va], valid.y, QUICK_LGBM_PARAMS
    )
    gap = np.asarray(np.clip(booster.predict(feats.iloc[n_tr + n_va :], num_threads=1), 0, None))
    return pole * (1.0 + gap / 100.0), gap


def stage1_baselines(
    tables: Tables,
    fit: StageData,
    train: StageData,
    valid: StageData,
    test: StageData,
    pole: np.ndarray,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(time s, gap %) per test row and Stage-1 baseline (``pole``: a pole lap per row)."""
    return {
        "practice_ratio": practice_ratio(fit, test),
        "quick_lgbm_gap": quick_lgbm_gap(tables, train, valid, test, pole),
    }


def recent_form_gap(test: StageData) -> np.ndarray:
    """Each driver's recent qualifying gap % (``d_q_gap_ewm``), else the field's median."""
    gap = test.x[:, STAGE1.pos["d_q_gap_ewm"]].astype(float)
    med = pd.Series(gap).groupby(test.meta["race_id"].to_numpy()).transform("median")
    return np.where(np.isnan(gap), med.to_numpy(float), gap)


def normalise(p: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-race shares (uniform where a race has no mass)."""
    out = np.empty_like(p, dtype=float)
    for g in np.unique(groups):
        m = groups == g
        out[m] = p[m] / p[m].sum() if p[m].sum() > 0 else 1.0 / m.sum()
    return out


def _quick_x(x: np.ndarray) -> np.ndarray:
    """Stage-2 rows as the quick LightGBM reads them (no ``STAGE2_UNBOOSTED`` input)."""
    return np.delete(np.asarray(x), [STAGE2.pos[n] for n in STAGE2_UNBOOSTED], axis=1)


def _log_grid(grid: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(grid, dtype=float), 1.0, None)).reshape(-1, 1)


@dataclass
class Stage2Baselines:
    """The Stage-2 baselines, fitted once, asked with the real grid and with Stage-1's: an even
    chance, whoever starts first, a logistic on log(grid slot), LightGBM on grid and form."""

    logistic: LogisticRegression
    quick: lgb.Booster

    @classmethod
    def fit(cls, fit: StageData, train: StageData, valid: StageData) -> Stage2Baselines:
        lr = LogisticRegression().fit(_log_grid(fit.meta["grid"].to_numpy()), fit.y)
        tx, vx = (pd.DataFrame(_quick_x(d.x)).add_prefix("f") for d in (train, valid))
        params = QUICK_LGBM_PARAMS | {"objective": "binary"}
        return cls(lr, fit_quick_lgbm(tx, train.y, vx, valid.y, params))

    def predict(self, grid: np.ndarray, x: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
        """Each baseline's win odds per row (normalised per race) from its grid and row."""
        grid = np.asarray(grid, dtype=float)
        best = pd.Series(grid).groupby(groups).transform("min").to_numpy()
        raw = {
            "uniform": np.ones(len(groups)),
            "pole_sitter": (grid == best).astype(float),
            "logistic_grid": self.logistic.predict_proba(_log_grid(grid))[:, 1],
            "quick_lgbm": self.quick.predict(_quick_x(x), num_threads=1),
        }
        return {k: normalise(np.asarray(v, dtype=float), groups) for k, v in raw.items()}


STAGE1_BASELINES = ("practice_ratio", "quick_lgbm_gap")
STAGE2_BASELINES = ("uniform", "pole_sitter", "logistic_grid", "quick_lgbm")


PODIUM_SLOTS = 20  # slots past this (pit lane, back of a long grid) share one frequency


def placing_by_grid(
    train: StageData, test: StageData, prior: float = 2.0, flag: str = "podium", k: int = 3
) -> np.ndarray:
    """P(top ``k`` | grid slot): each slot's ``flag`` rate in training, shrunk to the overall
    rate by ``prior`` starts, scaled per race to sum to k (capped at 1)."""
    slot = np.minimum(train.meta["grid"].to_numpy(float), PODIUM_SLOTS).astype(int) - 1
    flagged = train.meta[flag].to_numpy(float)
    hits = np.bincount(slot, weights=flagged, minlength=PODIUM_SLOTS)
    freq = (hits + prior * float(flagged.mean())) / (
        np.bincount(slot, minlength=PODIUM_SLOTS) + prior
    )
    raw = freq[np.clip(test.meta["grid"].to_numpy(float), 1, PODIUM_SLOTS).astype(int) - 1]
    groups = test.meta["race_id"].to_numpy()
    out = np.empty(len(raw))
    for g in np.unique(groups):
        m = groups == g
        out[m] = _scale_to(raw[m], min(float(k), float(m.sum())))
    return out


def _scale_to(p: np.ndarray, total: float) -> np.ndarray:
    """``p`` scaled to sum to ``total`` with no value above 1 (the rest share what is left)."""
    p = np.asarray(p, dtype=float).copy()
    capped = np.zeros(len(p), dtype=bool)
    for _ in range(len(p)):
        free = total - capped.sum()
        rest = p[~capped].sum()
        p[~capped] = p[~capped] * free / rest if rest > 0 else free / max((~capped).sum(), 1)
        over = (p > 1.0) & ~capped
        if not over.any():
            break
        p[over] = 1.0
        capped |= over
    return p
