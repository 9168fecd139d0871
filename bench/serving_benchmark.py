"""Item-embedding throughput and recommend_videos latency/recall on the embedded PostgreSQL.

    .venv/bin/python -m bench.serving_benchmark --videos 50000
    .venv/bin/python -m bench.serving_benchmark --videos 1000000

For one catalogue size it:
1. loads demo data into a fresh embedded PostgreSQL + pgvector and trains a quick model
   (2 epochs: throughput and latency do not depend on model quality), exported to ONNX;
   (or, with --model-from STATE, takes the model of a kept state: a 5M-video run need not train);
2. re-embeds the whole catalogue as the weekly job does (the catalogue streamed from PostgreSQL,
   feature preparation, ONNX Runtime, binary COPY into the version's partition) -> videos/s, and
   the client's peak memory above its baseline (this process and the feature workers);
3. the floor: binary COPY of the same, precomputed vectors into a fresh partition -> rows/s;
   steps 2 and 3 run --repeats times (median, min and max reported);
4. builds the HNSW index (once: reported separately), embeds the users and activates the version;
5. calls recommend_videos(user, 10) for sampled users, once to warm the cache (a serving database
   keeps its active index in memory) and once measured: latency p50/p95 (client round trip) and
   recall@10 against an exact scan of the same partition with the same exclusions, tie-aware (a returned
   video counts when its exact score reaches the exact 10th score), on 5 samples of 100 users (mean and each).
Writes bench/results/serving-<videos>v.json. The state folder is deleted at the end unless --keep-state;
``--queries-only STATE`` measures step 5 again on a kept state (e.g. with another --ef-search) and
updates the query figures of that size's results; ``--embed-only STATE`` measures steps 2 and 3
again on a kept state and updates their figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

from bench.machine import add_size_arguments, demo_size, machine
from twotower_pipeline import db, item_stream, vector_store
from twotower_pipeline.app_data import read_catalogue, read_likes, read_profiles
from twotower_pipeline.db.embedded import EmbeddedPostgres
from twotower_pipeline.db.migrations import apply_migrations
from twotower_pipeline.demo_data import generate_demo_data, load_demo_data
from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.export import export_tower
from twotower_pipeline.model.training import train_two_tower
from twotower_pipeline.publishing import ServingModel, publish_item_vectors, publish_user_vectors
from twotower_pipeline.settings import PROJECT_ROOT
from twotower_pipeline.validation import clean_catalogue, clean_likes

RESULTS = Path(__file__).resolve().parent / "results"


VERSION, FLOOR_VERSION, EMBED_VERSION = "bench-v1", "bench-floor", "bench-embed"
RECALL_SAMPLES, RECALL_USERS = 5, 100
TIE_TOLERANCE = 1e-6  # float32 vectors: equal vectors score equal to about 1e-7


def timed(label: str, results: dict, fn):
    started = time.perf_counter()
    value = fn()
    results[label] = round(time.perf_counter() - started, 2)
    print(f"  {label:<32} {results[label]:8.2f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(parser)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--ef-search", type=int, default=None, help="override hnsw.ef_search for the queries")
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--maintenance-work-mem", default=None,
                        help="for the index build, e.g. 4GB: an HNSW graph larger than it builds far slower")
    parser.add_argument("--keep-state", action="store_true", help="keep the state folder (for --queries-only)")
    parser.add_argument("--queries-only", type=Path, metavar="STATE", help="re-measure the queries on a kept state")
    parser.add_argument("--embed-only", type=Path, metavar="STATE", help="re-measure the re-embed on a kept state")
    parser.add_argument("--model-from", type=Path, metavar="STATE", help="use a kept state's model, do not train")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the re-embed and of the floor")
    options = parser.parse_args()
    if options.queries_only:
        queries_only(options)
        return
    if options.embed_only:
        embed_only(options)
        return

    seconds: dict[str, float] = {}
    state = Path(tempfile.mkdtemp(prefix="twotower-serving-bench-"))
    server = EmbeddedPostgres(state / "postgres")
    url = server.ensure_running()
    try:
        apply_migrations(url, PROJECT_ROOT / "supabase" / "migrations")
        now = datetime.now(UTC)
        print(f"{options.videos:,} videos, {options.users:,} users, {options.likes:,} likes", flush=True)
        data = timed("generate demo data", seconds, lambda: generate_demo_data(
            demo_size(options), now))
        with db.connect(url) as conn:
            timed("load demo data", seconds, lambda: load_demo_data(conn, data))
        data = None  # free the frames before training
        engine = db.create_engine(url)
        model_dir = state / "model"
        model_dir.mkdir(exist_ok=True)
        if options.model_from:
            for name in ("feature_spec.json", "user_tower.onnx", "item_tower.onnx"):
                shutil.copy(options.model_from / "model" / name, model_dir / name)
        else:
            catalogue = clean_catalogue(read_catalogue(engine))
            likes = clean_likes(read_likes(engine, datetime(2000, 1, 1, tzinfo=UTC)), set(catalogue["id"]), now)
            profiles = read_profiles(engine)
            trained = timed("train a quick model", seconds, lambda: train_two_tower(
                catalogue, likes, TrainingConfig(epochs=2), importance=False, profiles=profiles))
            catalogue = likes = None
            trained.spec.save(model_dir / "feature_spec.json")
            export_tower(trained.user_tower, model_dir / "user_tower.onnx")
            export_tower(trained.item_tower, model_dir / "item_tower.onnx")
        engine.dispose()
        register(url, state, VERSION, FLOOR_VERSION)
        model = bench_model(state)
        embed = embed_figures(url, model, now, options.repeats)  # into VERSION's partition, not indexed yet
        with db.connect(url, autocommit=True) as conn:
            if options.maintenance_work_mem:
                conn.execute(f"set maintenance_work_mem = '{options.maintenance_work_mem}'")
            timed("HNSW index build", seconds, lambda: vector_store.build_item_index(
                conn, VERSION, options.hnsw_m, options.ef_construction))
        timed("user embeddings", seconds, lambda: publish_user_vectors(url, model, now))
        with db.connect(url) as conn:
            vector_store.activate_version(conn, VERSION)

        latencies, recalls, ef_search = query_benchmark(url, VERSION, options.queries, options.ef_search)
        record = {
            "date": now.isoformat(timespec="seconds"),
            "size": {"videos": options.videos, "users": options.users, "likes": options.likes},
            "machine": machine(),
            "seconds": seconds,
            **embed,
            **query_figures(latencies, recalls, ef_search),
            "hnsw": {"m": options.hnsw_m, "ef_construction": options.ef_construction,
                     "maintenance_work_mem": options.maintenance_work_mem or "server default (1GB embedded)"},
        }
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"serving-{options.videos}v.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k not in ("machine",)}, indent=2))
        print(f"written to {out}")
    finally:
        server.stop()
        if options.keep_state:
            print(f"state kept in {state}: --queries-only {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


def bench_model(state: Path, version: str = VERSION) -> ServingModel:
    model_dir = state / "model"
    return ServingModel.load(version, str(model_dir / "user_tower.onnx"), str(model_dir / "item_tower.onnx"),
                             str(model_dir / "feature_spec.json"))


def register(url: str, state: Path, *versions: str) -> None:
    model_dir = state / "model"
    with db.connect(url) as conn:
        for name in versions:
            vector_store.register_version(
                conn, name, [vector_store.TowerRecord("user_tower", str(model_dir / "user_tower.onnx")),
                             vector_store.TowerRecord("item_tower", str(model_dir / "item_tower.onnx"))],
                str(model_dir / "feature_spec.json"), None, {"recall_at_50": 0.0})
            vector_store.create_version_partitions(conn, name)


def embed_figures(url: str, model: ServingModel, now: datetime, repeats: int) -> dict[str, object]:
    """The full re-embed and the floor, each ``repeats`` times: videos/s (median, min, max), the
    phases of the median run, the client's peak memory above its baseline."""
    runs, floors = [], []
    for run in range(repeats):
        with PeakMemory() as memory:
            report = publish_item_vectors(url, model, list(vector_store.SHARDS), now)
        runs.append({"videos_per_second": report.written / report.seconds, "seconds": report.seconds,
                     "phase_seconds": report.phase_seconds, "peak_memory_gib": memory.peak_gib})
        print(f"  re-embed run {run + 1}: {report.seconds:.1f} s, {runs[-1]['videos_per_second']:,.0f} videos/s, "
              f"peak {memory.peak_gib:.2f} GiB, phases {report.phase_seconds}", flush=True)
    with db.connect(url) as conn:
        rows = conn.execute("select video_id::text, embedding, popularity from public.two_tower_item_embeddings "
                            "where model_version = %s", (model.version,)).fetchall()
    ids = [r[0] for r in rows]
    vectors = np.stack([r[1].to_numpy() for r in rows]).astype(np.float32)
    popularity = np.array([r[2] for r in rows], dtype=np.float32)
    del rows
    for run in range(repeats):
        started = time.perf_counter()
        with db.connect(url) as conn:
            vector_store.write_item_vectors(conn, FLOOR_VERSION, list(vector_store.SHARDS), ids, vectors, popularity)
        floors.append(len(ids) / (time.perf_counter() - started))
        print(f"  floor run {run + 1}: {floors[-1]:,.0f} rows/s", flush=True)
    with db.connect(url) as conn:
        conn.execute("select public.two_tower_drop_version(%s)", (FLOOR_VERSION,))
    median_run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    embed = spread([r["videos_per_second"] for r in runs])
    floor = spread(floors)
    return {
        "repeats": repeats,
        "embed_videos_per_second": embed,
        "embed_seconds": spread([r["seconds"] for r in runs], 2),
        "embed_phase_seconds_median_run": median_run["phase_seconds"],
        "embed_phase_note": "each stage's busy time; the stages overlap (features summed over the worker processes)",
        "embed_peak_memory_gib": spread([r["peak_memory_gib"] for r in runs], 2),
        "floor_rows_per_second": floor,
        "embed_vs_floor": round(embed["median"] / floor["median"], 3),
        "feature_workers": item_stream.feature_workers(),
    }


def spread(values: list[float], digits: int = 0) -> dict[str, float]:
    def rounded(x: float) -> float:
        return round(x, digits) if digits else round(x)

    return {"median": rounded(statistics.median(values)), "min": rounded(min(values)), "max": rounded(max(values))}


class PeakMemory:
    """Peak resident memory of this process and its children (the feature workers) above what this
    process held when the block started, sampled every 50 ms."""

    def __enter__(self) -> PeakMemory:
        self._process = psutil.Process()
        self._baseline = self._process.memory_info().rss
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            total = self._process.memory_info().rss
            for child in self._process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self._peak = max(self._peak, total)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        return max(self._peak - self._baseline, 0) / 2**30


def embed_only(options: argparse.Namespace) -> None:
    def measure(url: str) -> dict[str, object]:
        # Into a fresh, unindexed version, as a weekly run writes a new version's vectors.
        register(url, options.embed_only, EMBED_VERSION, FLOOR_VERSION)
        embed = embed_figures(url, bench_model(options.embed_only, EMBED_VERSION), datetime.now(UTC),
                              options.repeats)
        with db.connect(url) as conn:
            conn.execute("select public.two_tower_drop_version(%s)", (EMBED_VERSION,))
            conn.execute("delete from public.embedding_model_versions where version in (%s, %s)",
                         (EMBED_VERSION, FLOOR_VERSION))
        return embed

    remeasure(options.embed_only, measure, "embed_measured",
              stale=("embed_phase_seconds", "onnx_and_copy_videos_per_second", "onnx_and_copy_vs_floor"))


def remeasure(state: Path, measure, stamp: str, stale: tuple[str, ...] = ()) -> None:
    """Run ``measure(url)`` on a kept state's database and update that size's results with its figures."""
    server = EmbeddedPostgres(state / "postgres")
    url = server.ensure_running()
    try:
        with db.connect(url) as conn:
            videos = conn.execute("select count(*) from public.videos").fetchone()[0]
        figures = measure(url)
    finally:
        server.stop()
    out = RESULTS / f"serving-{videos}v.json"
    record = json.loads(out.read_text()) if out.exists() else {}
    for key in stale:
        record.pop(key, None)
    record.update(figures)
    record[stamp] = datetime.now(UTC).isoformat(timespec="seconds")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"written to {out}")


def query_figures(latencies: list[float], recalls: list[float], ef_search: int) -> dict[str, object]:
    return {
        "recommend_videos_ms": {"p50": round(statistics.median(latencies), 2),
                                "p95": round(float(np.percentile(latencies, 95)), 2),
                                "queries": len(latencies), "cache": "warm"},
        "recall_at_10_vs_exact": round(float(np.mean(recalls)), 4),
        "recall_at_10_vs_exact_samples": [round(float(np.mean(recalls[i:i + RECALL_USERS])), 4)
                                          for i in range(0, len(recalls), RECALL_USERS)],
        "recall_definition": f"tie-aware: a returned video counts when its exact score is >= the exact 10th "
                             f"score - {TIE_TOLERANCE:g}; {len(recalls) // RECALL_USERS} samples of "
                             f"{RECALL_USERS} users",
        "ef_search": ef_search,
    }


def queries_only(options: argparse.Namespace) -> None:
    remeasure(options.queries_only,
              lambda url: query_figures(*query_benchmark(url, VERSION, options.queries, options.ef_search)),
              "queries_measured")


def query_benchmark(url: str, version: str, queries: int, ef_search: int | None
                    ) -> tuple[list[float], list[float], int]:
    """Latencies (ms) and recall@10 of recommend_videos for sampled users, and the hnsw.ef_search used."""
    with db.connect(url, autocommit=True) as conn:
        users = [str(r[0]) for r in conn.execute(
            "select user_id from public.two_tower_user_embeddings where model_version = %s order by user_id",
            (version,))]
        partition = conn.execute("select public.two_tower_partition_name('two_tower_item_embeddings', %s)",
                                 (version,)).fetchone()[0]
        rng = np.random.default_rng(0)
        sample = [users[i] for i in rng.integers(0, len(users), size=queries)]
        if ef_search:
            # The ranking function carries the setting (recommend_videos delegates to it).
            conn.execute("alter function public.two_tower_rank_videos(uuid, vector, text, integer) "
                         f"set hnsw.ef_search = {int(ef_search)}")
        # What the queries run with: the function's own setting (an override persists in a kept state).
        settings = conn.execute("select proconfig from pg_proc where proname = 'two_tower_rank_videos'").fetchone()[0]
        used = int(next(s.split("=", 1)[1] for s in settings if s.startswith("hnsw.ef_search=")))
        for user in sample:  # warm the cache and the plans
            conn.execute("select * from public.recommend_videos(%s, 10)", (user,)).fetchall()
        latencies, recalls = [], []
        for user in sample:
            started = time.perf_counter()
            got = [r[0] for r in conn.execute("select video_id from public.recommend_videos(%s, 10)", (user,))]
            latencies.append((time.perf_counter() - started) * 1000)
        # Recall@10 against the exact scan, tie-aware: a returned video is right when its exact score is at
        # least the exact 10th score (many videos can share a vector, e.g. those never liked in training,
        # and an id-based recall would count an equally good video as a miss). Samples of RECALL_USERS
        # users each, so the spread from one sample to another shows.
        recall_users = [users[i] for i in rng.integers(0, len(users), size=RECALL_SAMPLES * RECALL_USERS)]
        recalls = []
        for user in recall_users:
            got = [r[0] for r in conn.execute("select video_id from public.recommend_videos(%s, 10)", (user,))]
            # "+ 0" keeps the planner off the index: an exact scan with the same exclusions.
            tenth = conn.execute(
                f'select min(score) from (select -((e.embedding <#> u.embedding) + 0) as score '
                f'from public."{partition}" e, public.two_tower_user_embeddings u '
                "where u.model_version = %s and u.user_id = %s and not exists (select 1 from public.likes l "
                "where l.user_id = u.user_id and l.video_id = e.video_id) "
                "order by (e.embedding <#> u.embedding) + 0 limit 10) top", (version, user)).fetchone()[0]
            scores = conn.execute(
                f'select -(e.embedding <#> u.embedding) from public."{partition}" e, '
                "public.two_tower_user_embeddings u where u.model_version = %s and u.user_id = %s "
                "and e.video_id = any(%s::uuid[])", (version, user, got)).fetchall()
            recalls.append(sum(score >= tenth - TIE_TOLERANCE for (score,) in scores) / 10)
        return latencies, recalls, used


if __name__ == "__main__":
    main()
