"""`f1`: the project's command line (thin wrappers over pure functions)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer
from rich import progress as rp
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.settings import Settings, downloaded_data_dir, get_settings, resolve_data_dir

if TYPE_CHECKING:
    from pipelines.f1db.parse import Tables
    from training.pipeline import TrainResult

app = typer.Typer(
    help="F1 Predictor: data, training, evaluation and predictions.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="The F1DB data: download and inspect.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)


def _fail(msg: str) -> typer.Exit:
    """An error on one line whatever the terminal's width (a URL in it is not cut)."""
    err.print(f"[bold red]error:[/] {escape(msg)}", soft_wrap=True)
    return typer.Exit(1)


@contextlib.contextmanager
def _progress(title: str, total: int | None = None) -> Iterator[Callable[[str], None]]:
    """A progress bar over ``total`` steps (None: a spinner) yielding the ``step`` hook."""
    from training.pipeline import TrainingError

    counted = [rp.BarColumn(), rp.MofNCompleteColumn()] if total else []
    spin, text = rp.SpinnerColumn(), rp.TextColumn("{task.description}")
    elapsed = rp.TimeElapsedColumn()
    with rp.Progress(spin, text, *counted, elapsed, console=console, transient=True) as bar:
        task = bar.add_task(title, total=total)
        try:
            yield lambda msg: bar.update(task, description=msg, advance=1)
        except TrainingError as exc:
            raise _fail(str(exc)) from exc


@contextlib.contextmanager
def _season_bar(
    title: str, tables: Tables, season: int
) -> Iterator[tuple[Callable[[str], None], Callable[[Any], None]]]:
    """``_progress`` over tuning and each event of ``season``: the ``step`` and ``on_event`` hooks."""
    from training import pipeline

    n_events = int((tables.races["season"] == season).sum())
    grids = (pipeline.STAGE1_GRID, pipeline.STAGE2_GRID)
    n_tune = sum(int(np.prod([len(v) for v in grid.values()])) for grid in grids)
    with _progress(title, n_tune + n_events + 2) as step:
        yield step, lambda ctx: step(f"{season} round {ctx.round}: {ctx.circuit_id}")


def _load(settings: Settings, min_season: int | None = None) -> Tables:
    from pipelines.f1db.parse import DataError, load_tables

    data_dir = resolve_data_dir(settings)
    first = settings.history_from if min_season is None else min_season
    try:
        return load_tables(data_dir, settings.cache_dir, min_season=first, progress=True)
    except DataError as exc:
        raise _fail(str(exc)) from exc


def _download(s: Settings, tag: str | None, dest: Path, retry: str) -> Path:
    """Fetch F1DB release ``tag`` (None: the latest) into ``dest``; ``retry``: what else to do."""
    from pipelines.f1db.download import CREDIT, DownloadError, download_f1db, latest_tag

    try:
        if tag is None:
            tag = latest_tag(s.f1db_repo_url)
            console.print(f"latest F1DB release: {tag}")
        console.print(f"downloading F1DB {tag} into {dest}", highlight=False)
        out = download_f1db(tag, dest, s.f1db_repo_url)
    except DownloadError as exc:
        raise _fail(
            f"{exc}. Set F1_DATA_DIR to an F1DB data folder, or {retry} "
            f"(releases: {s.f1db_repo_url.rstrip('/')}/releases)"
        ) from exc
    console.print(f"F1DB {tag} is in {out}. {CREDIT}", highlight=False)
    return out


@data_app.command("download")
def data_download(
    tag: str | None = typer.Option(
        None, help="F1DB release tag, e.g. v2025.24.0 (default: F1_F1DB_TAG, else the latest)."
    ),
    dest: Path | None = typer.Option(
        None,
        help="Target folder (default: F1_DATA_DIR, else $XDG_DATA_HOME/f1-predictor/f1db, "
        "~/.local/share/f1-predictor/f1db when XDG_DATA_HOME is unset).",
    ),
) -> None:
    """Fetch F1DB's source archive for a release (the latest unless pinned) and unpack its
    src/data."""
    s = get_settings()
    target = Path(dest or s.data_dir or downloaded_data_dir())
    out = _download(s, tag or s.f1db_tag, target, "pass a release with --tag <tag>")
    if resolve_data_dir(s).resolve() != out.resolve():
        console.print(f"Use it with F1_DATA_DIR={out}", highlight=False)


def _download_if_no_data(s: Settings) -> None:
    """No F1_DATA_DIR and no data (or another pinned release): download F1DB per user."""
    from pipelines.f1db.download import installed_tag

    if s.data_dir is not None:
        return  # the user's folder: never replaced behind their back
    found = resolve_data_dir(s)
    dest = downloaded_data_dir()
    if (found / "seasons").is_dir():
        have = installed_tag(found)
        if s.f1db_tag is None or have == s.f1db_tag:
            return
        if found != dest:
            console.print(f"F1_F1DB_TAG={s.f1db_tag} not used: training on the data in {found}")
            return
        console.print(
            f"F1_F1DB_TAG={s.f1db_tag}, the downloaded copy holds {have or 'another release'}: "
            "replacing it"
        )
    else:
        which = f"release {s.f1db_tag} (F1_F1DB_TAG)" if s.f1db_tag else "the latest release"
        console.print(f"no F1DB data found (F1_DATA_DIR unset): downloading {which}")
    _download(s, s.f1db_tag, dest, "pin a release with F1_F1DB_TAG=<tag>")


@data_app.command("info")
def data_info() -> None:
    """Where the data is, which seasons it holds, the latest event with results."""
    s = get_settings()
    t = _load(s)
    races = t.races
    done = races[races["has_results"]]
    last = done.iloc[-1]
    console.print(f"data dir:     {resolve_data_dir(s)}")
    console.print(f"content hash: {t.content_hash}")
    console.print(
        f"seasons:      {races['season'].min()}-{races['season'].max()} "
        f"({len(races)} events, {len(done)} with results)"
    )
    console.print(
        f"latest event: {last['season']} round {last['round']} "
        f"{last['grand_prix_id']} ({last['date'].date()})"
    )


def _train(s: Settings) -> TrainResult:
    from training.pipeline import Protocol, run

    tables = _load(s)
    with _progress("training") as bar:

        def step(msg: str) -> None:
            bar(msg)
            console.log(msg)

        return run(tables, Protocol.of(s), step)


@app.command()
def train(
    if_missing: bool = typer.Option(
        False,
        "--if-missing",
        help="Do nothing if models exist; download F1DB first if no data is found.",
    ),
    report: bool = typer.Option(
        False, help="Also write reports/evaluation.* (`f1 evaluate` writes them otherwise)."
    ),
) -> None:
    """Tune, evaluate on the test season, refit on all seasons and store all three models.
    The evaluation goes into the store (/model_info), not into the tracked reports."""
    from pipelines.models import store

    s = get_settings()
    for tag in store.repair():
        console.print(f"removed {tag}: a save that never finished")
    if if_missing and store.has_models():
        console.print("models already in the store; skipping training (run `f1 train` to retrain)")
        _refresh_if_data_changed(s)
        return
    if if_missing:
        _download_if_no_data(s)
    t0 = time.perf_counter()
    res = _train(s)
    seasons = [s.train_from, s.test_season]
    tags = store.save_all(
        res.snapshot, res.stage1, res.stage2, res.evaluation, seasons, res.stage1_through
    )
    if report:
        from training.report import write_report

        write_report(res.evaluation, res.predictions, s.reports_dir)
    _print_summary(res.evaluation)
    console.print(
        f"saved {tags.features}, {tags.stage1}, {tags.stage2} in {time.perf_counter() - t0:.1f} s"
    )


@app.command()
def evaluate() -> None:
    """Run the evaluation protocol and write reports/evaluation.{json,md} + figures."""
    from training.report import write_report

    s = get_settings()
    res = _train(s)
    paths = write_report(res.evaluation, res.predictions, s.reports_dir)
    _print_summary(res.evaluation)
    for p in paths:
        console.print(f"wrote {p}")


@app.command()
def hindsight() -> None:
    """The test season forecast by models fitted on every other event, later ones included
    (a bound, not a forecast), and on it too, as served. Writes reports/hindsight.json."""
    from training import pipeline
    from training.hindsight import hindsight as run_hindsight
    from training.report import write_hindsight

    s = get_settings()
    t0 = time.perf_counter()
    tables = _load(s)
    proto = pipeline.Protocol.of(s)
    with _season_bar("hindsight", tables, proto.test_season) as (step, on_event):
        found = run_hindsight(tables, proto, step, on_event)
    path = write_hindsight(found, s.reports_dir)
    tab = Table(title=f"{found['season']}, each event by models fitted on all others")
    for col in ("metric", "hindsight", "fitted on it too, as served"):
        tab.add_column(col)
    shown = {
        "gap-to-pole MAE %": ("stage1", "test", "gap_pct_mae"),
        "Spearman": ("stage1", "test", "spearman"),
        "winner log loss after quali": ("stage2", "test", "winner_log_loss"),
        "top-1 after quali": ("stage2", "test", "top1"),
        "winner log loss before quali": ("stage2", "test_chained", "winner_log_loss"),
    }
    for name, (stage, mode, key) in shown.items():
        v, w = (block[stage][mode][key] for block in (found, found["served_in_sample"]))
        tab.add_row(name, *("-" if x is None else f"{x:.3f}" for x in (v, w)))
    console.print(tab)
    console.print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")


@app.command()
def backtest(
    season: int = typer.Option(..., help="The season to forecast, e.g. 2022."),
    train_from: int | None = typer.Option(
        None,
        help="First training season (default: F1_TRAIN_FROM, moved earlier to leave 3 "
        "tuning seasons before SEASON-1).",
    ),
) -> None:
    """Walk-forward backtest of a season with models trained only on earlier seasons.

    Tunes on SEASON-1 (models fitted on the seasons before it), refits on seasons up to SEASON-1, then asks every event of SEASON through the served two-stage flow before qualifying and after it, beside every baseline. Writes reports/backtest-SEASON.{json,md,png}.
    """
    from training import pipeline
    from training.backtest import backtest as run_backtest
    from training.backtest import backtest_seasons
    from training.report import write_backtest

    s = get_settings()
    hist, train = backtest_seasons(season, s.train_from, s.history_from)
    if train_from is not None:
        train, hist = train_from, min(hist, train_from - 2)
    t0 = time.perf_counter()
    tables = _load(s, hist)
    with _season_bar(f"backtest {season}", tables, season) as (step, on_event):
        res = run_backtest(tables, season, train, step, on_event, pipeline.Protocol.of(s))
    paths = write_backtest(season, res.evaluation, s.reports_dir)
    _print_summary(res.evaluation)
    p = res.evaluation["protocol"]
    console.print(
        f"trained on {p['test_fit_seasons'][0]}-{p['test_fit_seasons'][1]} (tuned on "
        f"{p['valid_season']}, form history from {p['history_from']}) in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    for path in paths:
        console.print(f"wrote {path}")


def _print_summary(ev: dict[str, Any]) -> None:
    from training.report import PODIUM_KEYS, POINTS_KEYS, S1_KEYS, S2_KEYS, fmt, predictors

    s2 = ev["stage2"]
    tables = [("stage1", ev["stage1"], S1_KEYS), ("stage2", s2, S2_KEYS)]
    tables += [("stage2 podium", s2["podium"], PODIUM_KEYS)]
    tables += [("stage2 points (top 10)", s2["points"], POINTS_KEYS)]
    for stage, m_stage, keys in tables:
        tab = Table(title=f"{stage} on test season {m_stage['test']['season']}")
        tab.add_column("predictor")
        for k in keys[1:]:
            tab.add_column(k, justify="right")
        rows = predictors(m_stage, "test")
        if "test_chained" in m_stage:
            rows += [(f"before qualifying: {n}", m) for n, m in predictors(m_stage, "test_chained")]
        ahead = m_stage["before_practice"]
        rows.append(("a weekend ahead: model", ahead["model"]))
        rows += [(f"a weekend ahead: {k}", v) for k, v in ahead["baselines"].items()]
        for name, m in rows:
            tab.add_row(name, *(fmt(m.get(k)) for k in keys[1:]))
        console.print(tab)


@app.command()
def refresh() -> None:
    """Rebuild the feature snapshot from the current data and, when it holds a qualifying
    newer than Stage-1's, refit Stage-1 on it (its settings kept)."""
    _refresh(get_settings())


def _refresh(s: Settings) -> None:
    from pipelines.features.snapshot import FeatureSnapshot
    from pipelines.models import store
    from training.datasets import stage1_data
    from training.pipeline import fit_stage1, last_event, latest_qualifying, refit_due

    tables = _load(s)
    snap = FeatureSnapshot.build(tables)
    latest = snap.meta.get("latest_event")
    stored = store.stage1_fitted_through()
    if stored is not None:
        through, seasons, cfg = stored
        if refit_due(through, seasons, latest_qualifying(tables)):
            data = stage1_data(snap, tables, seasons[0] if seasons else s.train_from)
            now = last_event(data)
            if now is not None:
                with console.status("refitting Stage-1 on the results since its last fit"):
                    model = fit_stage1(data, cfg)
                tags = store.save_refit(snap, model, now)
                console.print(
                    f"saved {tags.features} and {tags.stage1}: Stage-1 refitted on qualifying "
                    f"through {now['season']} round {now['round']} (latest event with "
                    f"results: {latest})"
                )
                return
    tag = store.save_snapshot(snap)
    console.print(f"saved {tag} (latest event with results: {latest})")


def _refresh_if_data_changed(s: Settings) -> None:
    """A new snapshot when the data differs from the stored one's; the models are kept."""
    from pipelines.f1db.parse import DataError, data_hash
    from pipelines.models import store

    try:
        current = data_hash(resolve_data_dir(s), s.history_from)
    except DataError:
        return  # no data here: serve the stored snapshot as it is
    stored = store.snapshot_data_hash()
    if stored == current:
        return
    console.print(
        f"the data changed since the stored feature snapshot ({(stored or '?')[:12]} -> "
        f"{current[:12]}): refreshing it"
    )
    _refresh(s)


@app.command()
def predict(
    season: int = typer.Option(..., help="Season of an event in the data."),
    round_: int = typer.Option(..., "--round", help="Round of that event."),
) -> None:
    """Predicted grid, win, podium and points probabilities for a known event, from its
    pre-qualifying data (drivers and teams by their F1DB names)."""
    from pipelines.models import store
    from pipelines.serving.orchestrator import TwoStage, run
    from pipelines.serving.resolve import ServedModels, resolve_request
    from pipelines.serving.schemas import EventInput

    s = get_settings()
    try:
        snap = store.open_snapshot(store.get_model(s.features_model))
        m1, m2 = store.get_model(s.stage1_model), store.get_model(s.stage2_model)
        flow = TwoStage.local(snap, store.open_stage1(m1), store.open_stage2(m2))
        served = ServedModels.of(m1, m2)
    except store.StoreError as exc:
        raise _fail(str(exc)) from exc
    if snap.event_by_round(season, round_) is None:
        raise _fail(f"no event season={season} round={round_} in the feature snapshot")
    # the API's resolution of the event: the same field and the same warnings
    event = EventInput(season=season, round=round_)
    res = resolve_request(snap, event, None, served, race=True)
    ctx, fld = res.event, res.field
    if not fld.entries:
        raise _fail(f"no entry list for {season} round {round_}")
    fc = run(flow.full(ctx, fld, np.arange(len(fld.entries))))
    q, race = fc.quali, fc.race
    assert race is not None
    tab = Table(title=f"{season} round {round_} ({ctx.circuit_id}, {ctx.date.date()})")
    cols = ["grid", "driver", "team", "pred. time s", "gap %"]
    for col in [*cols, "P(pole)", "P(win)", "P(podium)", "P(points)"]:
        tab.add_column(col, justify="left" if col in ("driver", "team") else "right")
    for i in sorted(range(len(fld.entries)), key=lambda i: q.grid[i]):
        e = fld.entries[i]
        name = fc.driver_names[i] or e.driver_id
        team = fc.constructor_names[i] or e.constructor_id or "?"
        shown = [q.time_s[i], q.gap_pct[i], q.pole_prob[i], race.win_prob[i]]
        shown += [race.podium_prob[i], race.points_prob[i]]
        tab.add_row(str(q.grid[i]), name, team, *(f"{v:.3f}" for v in shown))
    console.print(tab)
    for note in res.warnings:
        console.print(f"note: {note}", markup=False, highlight=False)


@app.command("track-record")
def track_record(
    season: int = typer.Option(..., help="Season whose recorded forecasts are scored."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON /track_record gives."),
) -> None:
    """Score the forecasts the service recorded before each event of a season against
    the results in the served data (the prediction log: F1_LEDGER_URL)."""
    from sqlalchemy.exc import SQLAlchemyError

    from pipelines.ledger import db
    from pipelines.ledger.track import from_log
    from pipelines.models import store

    s = get_settings()
    url = s.ledger_url or db.default_url(store.store_home())
    try:
        snap = store.open_snapshot(store.get_model(s.features_model))
    except store.StoreError as exc:
        raise _fail(str(exc)) from exc
    engine = db.make_engine(url, s.ledger_timeout_s)
    try:
        tr = from_log(engine, season, snap)
    except SQLAlchemyError as exc:
        raise _fail(f"prediction log at {db.redacted(url)}: {str(exc).splitlines()[0]}") from exc
    finally:
        engine.dispose()
    if as_json:
        console.print_json(tr.model_dump_json())
        return
    console.print(track_table(tr))
    console.print(summary_table(tr))


def _f(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def track_table(tr: Any) -> Table:
    """One row per scored event of the track record."""
    tab = Table(title=f"{tr.season}: forecasts recorded before each event, scored")
    cols = ["round", "event", "forecast", "made", "favourite", "winner", "P(winner)"]
    for col in [*cols, "log loss", "gap MAE %", "Spearman"]:
        tab.add_column(col, justify="right" if col in ("round", "P(winner)") else "left")
    for e in tr.events:
        tab.add_row(
            str(e.round), e.name, e.kind.replace("_", " "), e.forecast_at.date().isoformat(),
            e.favourite or "-", e.winner or "-", _f(e.winner_probability),
            _f(e.winner_log_loss), _f(e.gap_pct_mae), _f(e.spearman),
        )  # fmt: skip
    return tab


def summary_table(tr: Any) -> Table:
    """Each kind's season figures beside uniform odds and the pole-sitter."""
    tab = Table(title="the season")
    cols = ["forecast", "events", "log loss", "uniform", "top-1", "uniform top-1"]
    for col in [*cols, "pole-sitter won", "gap MAE %", "Spearman"]:
        tab.add_column(col)
    for kind, k in tr.summary.items():
        tab.add_row(
            kind.replace("_", " "), str(k.events), _f(k.winner_log_loss), _f(k.uniform_log_loss),
            _f(k.top1), _f(k.uniform_top1), _f(k.pole_sitter_top1), _f(k.gap_pct_mae),
            _f(k.spearman),
        )  # fmt: skip
    return tab


@app.command()
def models() -> None:
    """The stored versions of f1_features, f1_stage1 and f1_stage2."""
    from pipelines.models import store

    tab = Table(title=f"model store: {store.store_home()}")
    for col in ("tag", "created", "data hash", "latest event", "fitted through"):
        tab.add_column(col)
    rows = list(store.list_versions())
    for m in rows:
        md, created = m.info.metadata, m.creation_time.isoformat(timespec="seconds")
        t = md.get("fitted_through")  # Stage-1's latest qualifying (f1 refresh refits)
        when = [str(t.get(k)) for k in ("season", "round")] if isinstance(t, dict) else None
        through = "{} round {}".format(*when) if when else ""
        data = str(md.get("data_hash", ""))[:12], str(md.get("data_latest_event") or "")
        tab.add_row(str(m.tag), created, *data, through)
    console.print(tab if rows else "no models yet: run `f1 train`")


if __name__ == "__main__":
    app()
