"""HNSW parameters and vector type against recall@10, latency and build time, on a kept serving state.

    .venv/bin/python -m bench.serving_benchmark --videos 1000000 --keep-state   # prints the STATE folder
    .venv/bin/python -m bench.hnsw_sweep STATE --index vector:16:128 --index halfvec:16:128 \\
        --ef-search 100 200 400 800

For each index (type:m:ef_construction) it drops the partition's HNSW index, builds that one (build
time, index size), then for each ef_search runs recommend_videos' vector query (same SQL: the user's
likes and videos gone from the catalogue excluded, iterative scan in strict order) for sampled
users: latency p50/p95 (client round trip, warm: each query runs once unmeasured first) and recall@10
against the exact ranking computed here from the stored vectors, tie-aware (a returned video counts
when its exact score reaches the exact 10th score - 1e-6), in samples of 100 users (mean, min, max).
A halfvec index is an expression index on embedding::halfvec(64); its query orders by the halfvec
distance, and with --rerank N fetches N candidates that way and orders them by the exact vector
score (what a halfvec index serves with). Appends each point to bench/results/hnsw-<videos>v.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg

from bench.machine import machine
from twotower_pipeline import db
from twotower_pipeline.db.embedded import EmbeddedPostgres

RESULTS = Path(__file__).resolve().parent / "results"
VERSION = "bench-v1"
TIE_TOLERANCE = 1e-6
SAMPLE_USERS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("state", type=Path)
    parser.add_argument("--index", action="append", required=True, help="type:m:ef_construction, e.g. halfvec:16:128")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--rerank", type=int, nargs="*", default=[], help="halfvec: candidates re-ranked exactly")
    parser.add_argument("--probes", type=int, nargs="+", default=[10, 20, 40], help="ivfflat:LISTS:0 indexes")
    parser.add_argument("--samples", type=int, default=3, help="samples of 100 users")
    parser.add_argument("--keep-index", action="store_true", help="leave the last index built in place")
    parser.add_argument("--reuse-default-index", action="store_true",
                        help="vector:16:128: measure the state's index as built, without rebuilding it")
    options = parser.parse_args()

    server = EmbeddedPostgres(options.state / "postgres")
    url = server.ensure_running()
    try:
        with db.connect(url, autocommit=True) as conn:
            exact = ExactRanking.load(conn, options.samples * SAMPLE_USERS)
            out = RESULTS / f"hnsw-{exact.videos}v.json"
            record = json.loads(out.read_text()) if out.exists() else {"machine": machine(), "points": []}
            for spec in options.index:
                kind, m, ef_construction = spec.split(":")
                if spec == "vector:16:128" and options.reuse_default_index and current_index_is_default(conn, exact):
                    build = {"seconds": None, "size_mb": index_mb(conn, exact.partition)}
                else:
                    build = build_index(conn, exact.partition, kind, int(m), int(ef_construction))
                print(f"{spec}: built in {build['seconds']} s, {build['size_mb']} MB", flush=True)
                reranks = options.rerank if kind == "halfvec" and options.rerank else [0]
                for ef_search in options.probes if kind == "ivfflat" else options.ef_search:
                    for rerank in reranks:
                        point = {"index": kind, "m": int(m), "ef_construction": int(ef_construction),
                                 "build_seconds": build["seconds"], "index_mb": build["size_mb"],
                                 "ef_search": ef_search, "rerank": rerank or None,
                                 **measure(conn, exact, kind, ef_search, rerank),
                                 "measured": datetime.now(UTC).isoformat(timespec="seconds")}
                        print(json.dumps({k: v for k, v in point.items() if k != "measured"}), flush=True)
                        record["points"].append(point)
                        out.write_text(json.dumps(record, indent=2) + "\n")
            if not options.keep_index:
                # Leave the state as the serving benchmark made it (vector, m 16, ef_construction 128).
                build_index(conn, exact.partition, "vector", 16, 128)
    finally:
        server.stop()


class ExactRanking:
    """The stored vectors, and for sampled users the exact 10th score with recommend_videos' exclusions."""

    def __init__(self, conn: psycopg.Connection, users: list[str]) -> None:
        self.partition = conn.execute("select public.two_tower_partition_name('two_tower_item_embeddings', %s)",
                                      (VERSION,)).fetchone()[0]
        rows = conn.execute(f'select video_id::text, embedding from public."{self.partition}" e '
                            "where exists (select 1 from public.videos v where v.id = e.video_id)").fetchall()
        self.videos = len(rows)
        self.row = {video: i for i, (video, _) in enumerate(rows)}
        self.vectors = np.stack([vector.to_numpy() for _, vector in rows]).astype(np.float32)
        del rows
        self.users = users
        self.user_vectors = {}
        self.tenth = {}
        for user in users:
            vector = conn.execute("select embedding from public.two_tower_user_embeddings "
                                  "where model_version = %s and user_id = %s", (VERSION, user)).fetchone()[0].to_numpy()
            liked = [self.row[v] for (v,) in conn.execute(
                "select video_id::text from public.likes where user_id = %s", (user,)) if v in self.row]
            scores = self.vectors @ vector
            scores[liked] = -np.inf
            self.user_vectors[user] = vector
            self.tenth[user] = float(np.partition(scores, -10)[-10])

    @classmethod
    def load(cls, conn: psycopg.Connection, count: int) -> ExactRanking:
        users = [str(r[0]) for r in conn.execute(
            "select user_id from public.two_tower_user_embeddings where model_version = %s order by user_id",
            (VERSION,))]
        rng = np.random.default_rng(1)
        return cls(conn, [users[i] for i in rng.choice(len(users), size=min(count, len(users)), replace=False)])

    def recall(self, user: str, returned: list[str]) -> float:
        scores = self.vectors[[self.row[v] for v in returned]] @ self.user_vectors[user]
        return float(np.sum(scores >= self.tenth[user] - TIE_TOLERANCE)) / 10


def build_index(conn: psycopg.Connection, partition: str, kind: str, m: int, ef_construction: int) -> dict:
    """``kind`` vector or halfvec: HNSW (m, ef_construction); ivfflat: IVFFlat with ``m`` lists."""
    conn.execute(f'drop index if exists public."{partition}_hnsw"')
    column = {"halfvec": "(embedding::halfvec(64))", "centred": f"((embedding - {centre_literal(conn, partition)})::vector(64))"
              }.get(kind, "embedding")
    ops = "halfvec_ip_ops" if kind == "halfvec" else "vector_ip_ops"
    method = (f"ivfflat ({column} {ops}) with (lists = {m})" if kind == "ivfflat"
              else f"hnsw ({column} {ops}) with (m = {m}, ef_construction = {ef_construction})")
    started = time.perf_counter()
    conn.execute(f'create index "{partition}_hnsw" on public."{partition}" using {method}')
    seconds = round(time.perf_counter() - started, 1)
    conn.execute(f'analyze public."{partition}"')
    return {"seconds": seconds, "size_mb": index_mb(conn, partition)}


@functools.cache
def centre_literal(conn: psycopg.Connection, partition: str) -> str:
    """The partition's mean vector, as a literal (an expression index and its query must match: it
    is computed once)."""
    centre = conn.execute(f'select avg(embedding)::text from public."{partition}"').fetchone()[0]
    return f"'{centre}'::vector(64)"


def index_mb(conn: psycopg.Connection, partition: str) -> int:
    size = conn.execute("select pg_relation_size(%s::regclass)", (f'public."{partition}_hnsw"',)).fetchone()[0]
    return round(size / 2**20)


def current_index_is_default(conn: psycopg.Connection, exact: ExactRanking) -> bool:
    definition = conn.execute("select indexdef from pg_indexes where indexname = %s",
                              (f"{exact.partition}_hnsw",)).fetchone()
    return bool(definition) and "vector_ip_ops" in definition[0] and "m='16'" in definition[0].replace(" ", "") \
        and "ef_construction='128'" in definition[0].replace(" ", "")


def query_sql(partition: str, kind: str, rerank: int, centre: str = "") -> str:
    exclusions = ("not exists (select 1 from public.likes l where l.user_id = %(user)s and l.video_id = e.video_id) "
                  "and exists (select 1 from public.videos v where v.id = e.video_id)")
    if kind == "vector":
        return (f'select e.video_id::text from public."{partition}" e where {exclusions} '
                "order by e.embedding <#> %(q)s limit 10")
    if kind == "centred":  # u.(v - c) = u.v - u.c: the same order, on vectors spread around the origin
        return (f'select e.video_id::text from public."{partition}" e where {exclusions} '
                f"order by (e.embedding - {centre})::vector(64) <#> %(q)s limit 10")
    if kind == "ivfflat":  # relaxed order (the only iterative scan of IVFFlat), sorted again
        return (f'select c.video_id::text from (select e.video_id, e.embedding <#> %(q)s as d from '
                f'public."{partition}" e where {exclusions} order by e.embedding <#> %(q)s limit 10) c order by c.d')
    halfvec_order = "order by e.embedding::halfvec(64) <#> %(q)s::halfvec(64)"
    if not rerank:
        return f'select e.video_id::text from public."{partition}" e where {exclusions} {halfvec_order} limit 10'
    return (f'select c.video_id::text from (select e.video_id, e.embedding from public."{partition}" e '
            f"where {exclusions} {halfvec_order} limit {int(rerank)}) c order by c.embedding <#> %(q)s limit 10")


def measure(conn: psycopg.Connection, exact: ExactRanking, kind: str, ef_search: int, rerank: int) -> dict:
    statement = query_sql(exact.partition, kind, rerank,
                          centre_literal(conn, exact.partition) if kind == "centred" else "")
    latencies, recalls = [], []
    with conn.transaction():
        if kind == "ivfflat":
            conn.execute(f"set local ivfflat.probes = {int(ef_search)}")  # ef_search is the probes here
            conn.execute("set local ivfflat.iterative_scan = relaxed_order")
        else:
            conn.execute(f"set local hnsw.ef_search = {int(ef_search)}")
            conn.execute("set local hnsw.iterative_scan = strict_order")
        for user in exact.users:
            params = {"user": user, "q": exact.user_vectors[user]}
            conn.execute(statement, params).fetchall()  # warm
            started = time.perf_counter()
            returned = [r[0] for r in conn.execute(statement, params)]
            latencies.append((time.perf_counter() - started) * 1000)
            recalls.append(exact.recall(user, returned))
    samples = [float(np.mean(recalls[i:i + SAMPLE_USERS])) for i in range(0, len(recalls), SAMPLE_USERS)]
    return {"recall_at_10": round(float(np.mean(recalls)), 4), "recall_samples": [round(s, 4) for s in samples],
            "p50_ms": round(statistics.median(latencies), 2), "p95_ms": round(float(np.percentile(latencies, 95)), 2)}


if __name__ == "__main__":
    main()
