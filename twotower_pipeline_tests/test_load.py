"""Load: 50 concurrent clients for 60 seconds while the active version switches, against
recommend_videos and against the recommendations Edge Function. Slow: run with
`make test-slow` (or `.venv/bin/python -m pytest -m slow`); figures go to test-output/load-*.json."""

import asyncio
import json
import os
import secrets
import statistics
import threading
import time
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from twotower_pipeline import db
from twotower_pipeline.publishing import activate, load_version
from twotower_pipeline.settings import PROJECT_ROOT
from twotower_pipeline.vector_store import version_record
from twotower_pipeline_tests.conftest import PUBLISHABLE, QUICK, new_database, published_pipeline

pytestmark = pytest.mark.slow

SIZE = PUBLISHABLE
CLIENTS = 50
SECONDS = 60
OUTPUT = PROJECT_ROOT / "test-output"


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, postgres_server):
    """Two activated versions, so the switch under load can go back and forth."""
    url = new_database(postgres_server, "l")
    with published_pipeline(tmp_path_factory.mktemp("home"), url, SIZE, QUICK, retrains=2) as state:
        with db.connect(url) as conn:
            versions = [r[0] for r in conn.execute(
                "select version from public.embedding_model_versions where model_type = 'item_tower' "
                "and activated_at is not null order by created_at")]
            users = [str(r[0]) for r in conn.execute("select distinct user_id from public.likes limit 200")]
        yield url, state.env, versions, users


def _switcher(url: str, versions: list[str], stop: threading.Event, switches: list[str]) -> None:
    """Activate the versions in turn, every 10 seconds, as a rollback and a retrain would."""
    while not stop.wait(10):
        with db.connect(url) as conn:
            current = conn.execute("select version from public.embedding_model_versions "
                                   "where is_active and model_type = 'item_tower'").fetchone()[0]
            target = next(v for v in versions if v != current)
            record = version_record(conn, target)
        activate(url, load_version(record), now=datetime.now(UTC), keep_versions=5)
        switches.append(target)


def _percentiles(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(latencies), 2), "p95_ms": round(float(np.percentile(latencies, 95)), 2),
            "max_ms": round(max(latencies), 2), "requests": len(latencies)}


def test_recommend_videos_under_50_clients_while_the_version_switches(two_versions):
    url, _, versions, users = two_versions
    stop = threading.Event()
    switches: list[str] = []
    switcher = threading.Thread(target=_switcher, args=(url, versions, stop, switches), daemon=True)

    async def client(index: int, deadline: float, results: list, errors: list) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            i = index
            while time.monotonic() < deadline:
                user = users[i % len(users)]
                i += CLIENTS
                started = time.perf_counter()
                try:
                    rows = await (await conn.execute(
                        "select video_id, model_version from public.recommend_videos(%s, 10)", (user,))).fetchall()
                except psycopg.Error as error:
                    errors.append(repr(error))
                    continue
                results.append(((time.perf_counter() - started) * 1000, len(rows), {r[1] for r in rows}))

    async def main() -> tuple[list, list]:
        results, errors = [], []
        deadline = time.monotonic() + SECONDS
        await asyncio.gather(*(client(i, deadline, results, errors) for i in range(CLIENTS)))
        return results, errors

    switcher.start()
    results, errors = asyncio.run(main())
    stop.set()
    switcher.join(timeout=120)
    figures = {"clients": CLIENTS, "seconds": SECONDS, "switches": len(switches), "errors": len(errors),
               **_percentiles([r[0] for r in results]),
               "requests_per_second": round(len(results) / SECONDS, 1)}
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "load-recommend_videos.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    assert errors == []
    assert len(switches) >= 3
    assert all(count == 10 and len(seen) == 1 for _, count, seen in results)


def test_the_edge_function_under_50_clients_while_the_version_switches(two_versions):
    from bench.edge_benchmark import Function, jwt, load

    url, env, versions, users = two_versions
    secret = secrets.token_urlsafe(32)
    function = Function("two_tower_recommendations", {**os.environ, "SUPABASE_DB_URL": url,
                                                      "SUPABASE_JWT_SECRET": secret})
    stop = threading.Event()
    switches: list[str] = []
    switcher = threading.Thread(target=_switcher, args=(url, versions, stop, switches), daemon=True)
    try:
        requests = [({"k": 10}, jwt({"sub": user, "role": "authenticated"}, secret)) for user in users]
        switcher.start()
        figures = load(function.port, requests, CLIENTS, SECONDS)
    finally:
        stop.set()
        switcher.join(timeout=120)
        function.stop()
    figures["switches"] = len(switches)
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "load-edge-function.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    assert figures["errors"] == 0, figures["error_examples"]
    assert len(switches) >= 3
