"""How good could any model be on the demo data, and how close do ours get? One holdout for all.

    .venv/bin/python -m bench.model_quality            # baselines and both oracles (~2 min)
    .venv/bin/python -m bench.model_quality --train    # plus the two-tower with both losses (~10 min)
    .venv/bin/python -m bench.model_quality --train --losses margin --videos 5000 --users 300 --likes 15000

Builds the demo data in memory (no database) and prepares it exactly as a training run does
(``prepare_training`` with the default ``TrainingConfig``, at the data's "now": each user's newest
10% of likes held out, ``HoldoutConfig``). Every ranker is then scored with ``evaluate_ranker`` on
that one holdout, each ranking the whole catalogue minus the user's likes in the database (the
snapshot without the held-out likes):

- ``popularity``, ``item_knn`` and ``ease``: the pipeline's own baselines (``baseline_metrics``:
  the cold-start list's order, cosine ItemKNN, EASE); ``rp3beta``: RP3beta on the same likes;
- ``two_tower_<loss>`` (with ``--train``): ``train_two_tower`` with that loss, defaults otherwise,
  at the same moment; its metrics (``TrainedTwoTower.metrics``) are what ``recommend_videos``
  would serve (``score_towers``: user vectors from each user's newest likes, item inputs as of the
  moment); checked to be on the same holdout;
- ``oracle``: the generator's own log-probability of each video being the user's next like
  (``demo_data.oracle_scores``) at the time of the user's first held-out like, with the user's
  database likes left out. No model of the likes can know more than the generator at that moment;
  what it misses is noise in the likes themselves, later drift, and videos published later;
- ``oracle_all_times``: a clairvoyant variant that also knows *when* each held-out like happens:
  videos ranked by the sum over those times of the generator's probability (the expected number
  of held-out likes of each video). It is not attainable (nobody knows the future like times);
  the gap to ``oracle`` is what drift and new releases during the holdout cost.

Writes bench/results/model-quality-<videos>v-<users>u-<likes>l.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.machine import add_size_arguments, demo_size, machine
from twotower_pipeline.demo_data import DemoData, generate_demo_data, oracle_scores

RESULTS = Path(__file__).resolve().parent / "results"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
"""Fixed so runs are comparable (the generator's draws do not depend on it; only the dates do).
Also the moment of the run: the snapshot's and the served item inputs' "now"."""
METRICS = ("recall_at_50", "precision_at_10", "ndcg_at_10", "auc", "coverage_at_10", "coverage_at_50",
           "genre_entropy_at_10")
ORACLE_QUERIES = 256
"""(user, time) queries scored at once by the clairvoyant oracle: 256 × 50,000 float64 = 100 MB."""


def timed(what: str, function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"  {what}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return result, seconds


def database_seen(prepared) -> list[np.ndarray]:
    """Each held-out user's catalogue rows in the database (the snapshot without the held-out likes):
    what every ranker leaves out, as recommend_videos does."""
    liked = prepared.snapshot.likes.groupby("user_id")["row"]
    rows = {user: values.to_numpy(dtype=np.int64) for user, values in liked}
    empty = np.zeros(0, dtype=np.int64)
    return [np.sort(rows.get(user, empty)) for user in prepared.holdout_user_ids]


def oracle_rankers(data: DemoData, prepared, seen: list[np.ndarray]) -> tuple[dict[str, object], dict[str, float]]:
    """Score functions for the oracle at the first held-out like and for the clairvoyant variant,
    plus facts about the holdout that bound every ranker."""
    truth = data.truth
    catalogue_ids = prepared.catalogue["id"].to_numpy()
    users = prepared.holdout_user_ids
    times = prepared.holdout_times
    first_s = np.array([t.min() for t in times])
    seen_ids = [catalogue_ids[rows] for rows in seen]

    def at_first_held_out_like(chunk: slice) -> np.ndarray:
        return oracle_scores(truth, users[chunk], first_s[chunk], catalogue_ids, exclude=seen_ids[chunk])

    def at_every_held_out_like(chunk: slice) -> np.ndarray:
        # log Σ_j P(video | user, t_j) over the user's held-out like times t_j.
        chunk_users = np.arange(*chunk.indices(len(users)))
        query_user = np.repeat(chunk_users, [len(times[u]) for u in chunk_users])
        query_s = np.concatenate([times[u] for u in chunk_users])
        out = np.full((len(chunk_users), len(catalogue_ids)), -np.inf)
        for first in range(0, len(query_user), ORACLE_QUERIES):
            q = slice(first, first + ORACLE_QUERIES)
            scores = oracle_scores(truth, users[query_user[q]], query_s[q], catalogue_ids,
                                   exclude=[seen_ids[u] for u in query_user[q]])
            for u in np.unique(query_user[q]):
                rows = scores[query_user[q] == u]
                out[u - chunk_users[0]] = np.logaddexp(out[u - chunk_users[0]], np.logaddexp.reduce(rows, axis=0))
        return out

    relevant_lists = prepared.holdout_relevant
    created_s = prepared.catalogue["created_at"].astype("int64").to_numpy() // 10**9
    liked_after_first = np.concatenate([created_s[relevant] >= first_s[u]
                                        for u, relevant in enumerate(relevant_lists)])
    all_train = np.bincount(prepared.snapshot.likes["row"].to_numpy(), minlength=len(catalogue_ids))
    relevant = np.concatenate(relevant_lists)
    as_of_s = prepared.as_of.value / 1e9
    facts = {
        "holdout_users": float(len(users)),
        "held_out_likes": float(len(relevant)),
        "mean_held_out_likes_per_user": float(np.mean([len(r) for r in relevant_lists])),
        "median_held_out_likes_per_user": float(np.median([len(r) for r in relevant_lists])),
        "held_out_span_days_median": float(np.median([(t.max() - t.min()) / 86_400 for t in times])),
        "days_from_first_held_out_like_to_the_run_median": float(np.median((as_of_s - first_s) / 86_400)),
        "share_of_held_out_likes_on_videos_published_after_the_first_held_out_like": float(liked_after_first.mean()),
        "share_of_held_out_likes_on_videos_without_a_database_like": float((all_train[relevant] == 0).mean()),
        "share_of_catalogue_with_a_database_like": float((all_train > 0).mean()),
    }
    return {"oracle": at_first_held_out_like, "oracle_all_times": at_every_held_out_like}, facts


def same_holdout(a, b) -> bool:
    return (np.array_equal(a.holdout_user_ids, b.holdout_user_ids)
            and all(np.array_equal(x, y) for x, y in zip(a.holdout_relevant, b.holdout_relevant))
            and all(np.array_equal(x, y) for x, y in zip(database_seen(a), database_seen(b)))
            and a.catalogue["id"].equals(b.catalogue["id"]) and a.as_of == b.as_of)


def train(loss: str, catalogue: pd.DataFrame, likes: pd.DataFrame, profiles: pd.DataFrame, prepared) -> dict:
    from twotower_pipeline.model.config import TrainingConfig
    from twotower_pipeline.model.training import train_two_tower

    def progress(epoch: int, logs: dict[str, float]) -> None:
        print(f"    {loss} epoch {epoch + 1}: loss {logs.get('loss', float('nan')):.4f}, "
              f"val R@50 {logs.get('val_recall_at_50', float('nan')):.4f}", file=sys.stderr, flush=True)

    trained, seconds = timed(f"train two-tower ({loss})", train_two_tower, catalogue, likes,
                             TrainingConfig(loss=loss), on_epoch_end=progress, importance=False, profiles=profiles,
                             as_of=NOW)
    if not same_holdout(trained.prepared, prepared):
        raise SystemExit(f"training with loss={loss} prepared a different holdout; the comparison would be unfair")
    stats = trained.stats
    return {
        "metrics": trained.metrics,
        "epochs_run": int(stats["epochs_run"]),
        "best_epoch": int(stats["best_epoch"]),
        "fit_seconds": round(stats["fit_seconds"], 1),
        "seconds_per_epoch": round(stats["seconds_per_epoch"], 2),
        "examples_per_second": round(stats["examples_per_second"], 1),
        "training_examples": int(stats["training_examples"]),
        "evaluation_seconds": round(stats["evaluation_seconds"], 1),
        "wall_seconds": round(seconds, 1),
        "val_recall_at_50": trained.history.get("val_recall_at_50", []),
        "loss_history": trained.history.get("loss", []),
        "its_own_baselines_recall_at_50": {name: m["recall_at_50"] for name, m in trained.baselines.items()},
    }


def markdown(rankers: dict[str, dict[str, float]], targets: dict[str, float]) -> str:
    names = list(rankers)
    lines = ["| metric | " + " | ".join(names) + " | target |", "|---|" + "---:|" * (len(names) + 1)]
    for metric in METRICS:
        cells = [f"{rankers[name][metric]:.4f}" for name in names]
        target = f"> {targets[metric]:.2f}" if metric in targets else ""
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {target} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(parser)
    parser.add_argument("--train", action="store_true", help="also train the two-tower model with each loss")
    parser.add_argument("--losses", default="sampled_softmax,margin",
                        help="comma-separated losses to train with --train (default: both)")
    options = parser.parse_args()

    from twotower_pipeline.model.baselines import rp3beta_scores
    from twotower_pipeline.model.config import LOSSES, TrainingConfig
    from twotower_pipeline.model.evaluation import SEED_TARGETS, HoldoutUsers, evaluate_ranker
    from twotower_pipeline.model.preparation import baseline_metrics, prepare_training

    losses = [loss.strip() for loss in options.losses.split(",") if loss.strip()]
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown:
        parser.error(f"unknown loss(es) {', '.join(unknown)}; choose from {', '.join(LOSSES)}")

    size = demo_size(options)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    print(f"{size.videos:,} videos, {size.users:,} users, {size.likes:,} likes, seed {size.seed}", file=sys.stderr)
    data, seconds["generate"] = timed("generate demo data", generate_demo_data, size, NOW)
    (catalogue, likes, profiles), seconds["frames"] = timed("build app frames", DemoData.pipeline_frames, data)
    prepared, seconds["prepare"] = timed("prepare_training", prepare_training, catalogue, likes, TrainingConfig(),
                                         profiles, NOW)
    seen = database_seen(prepared)
    holdout = HoldoutUsers(seen, prepared.holdout_relevant)

    results: dict[str, dict[str, float]] = {}
    baselines, seconds["baselines"] = timed("popularity, ItemKNN and EASE", baseline_metrics, prepared)
    results.update(baselines)

    def rp3beta():  # fitted on the same likes as the pipeline's baselines
        scores = rp3beta_scores(prepared.sequences.rows, seen, len(prepared.catalogue))
        return evaluate_ranker(scores, holdout, prepared.item_genres), scores.info

    (results["rp3beta"], rp3_info), seconds["rp3beta"] = timed("RP3beta", rp3beta)
    oracles, facts = oracle_rankers(data, prepared, seen)
    for name, score_chunk in oracles.items():
        results[name], seconds[name] = timed(name, evaluate_ranker, score_chunk, holdout, prepared.item_genres)

    training: dict[str, dict] = {}
    if options.train:
        for loss in losses:
            training[loss] = train(loss, catalogue, likes, profiles, prepared)
            results[f"two_tower_{loss}"] = training[loss]["metrics"]
    seconds["total"] = time.perf_counter() - started

    order = ["popularity", "item_knn", "ease", "rp3beta", *(f"two_tower_{loss}" for loss in training), "oracle",
             "oracle_all_times"]
    rankers = {name: results[name] for name in order}
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": {"videos": size.videos, "users": size.users, "likes": size.likes, "seed": size.seed},
        "demo_now": NOW.isoformat(),
        "holdout_config": {"holdout_fraction": TrainingConfig().holdout.holdout_fraction,
                           "min_likes_for_holdout": TrainingConfig().holdout.min_likes_for_holdout},
        "machine": machine(),
        "holdout": facts,
        "targets": SEED_TARGETS,
        "rankers": rankers,
        "baseline_info": {"rp3beta": rp3_info},
        "training": training,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "two_tower_definition": (
            "what recommend_videos serves at the run's moment (TrainedTwoTower.metrics, score_towers): user "
            "vectors from each user's newest database likes, like ages from the newest like, item inputs as of "
            "the moment, the user's database likes excluded"
        ),
        "oracle_definition": (
            "log P(next like = v | user, t) under the generator at t = the user's first held-out like, the "
            "user's database likes excluded (demo_data.oracle_scores); oracle_all_times ranks by "
            "log sum_j P(v | user, t_j) over the user's actual held-out like times (clairvoyant)"
        ),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"model-quality-{size.videos}v-{size.users}u-{size.likes}l.json"
    path.write_text(json.dumps(record, indent=2) + "\n")

    print(f"\n{size.videos:,} videos, {size.users:,} users, {size.likes:,} likes (seed {size.seed}); "
          f"{int(facts['holdout_users']):,} held-out users, {int(facts['held_out_likes']):,} held-out likes; "
          f"{record['machine']['cores']} cores ({record['machine']['cpu']})\n")
    print(markdown(rankers, SEED_TARGETS))
    if training:
        print("\n| two-tower | epochs (best) | s/epoch | examples/s | fit (s) |\n|---|---:|---:|---:|---:|")
        for loss, run in training.items():
            print(f"| {loss} | {run['epochs_run']} ({run['best_epoch']}) | {run['seconds_per_epoch']:.1f} | "
                  f"{run['examples_per_second']:,.0f} | {run['fit_seconds']:.0f} |")
    print(f"\ntotal {seconds['total']:.0f} s; written to {path}")


if __name__ == "__main__":
    main()
