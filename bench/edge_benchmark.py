"""The Edge Functions served locally by Deno against the embedded PostgreSQL, at the demo size.

    .venv/bin/python -m bench.edge_benchmark            (make bench-edge)

1. loads the demo data (50,000 videos, 1,000 users, 100,000 likes by default) into a fresh
   embedded PostgreSQL + pgvector and runs the weekly retrain with a quick 2-epoch training
   (latency does not depend on model quality): a real exported and activated version;
2. serves supabase/functions/two_tower_recommendations/index.ts and update_user_embedding/index.ts
   with `deno run` (their own Deno.serve handlers, on 127.0.0.1 via DENO_SERVE_ADDRESS; no Docker,
   no gateway: the functions verify the JWTs themselves with a generated SUPABASE_JWT_SECRET);
3. from a small threaded HTTP client on loopback (keep-alive connections, signed user JWTs):
   - latency, one request at a time, of users whose stored vector is fresh ("stored": the
     function's transaction + recommend_videos) and of users whose vector was removed
     ("computed": likes, features and the ONNX user tower in Deno, then the same ranking);
   - throughput: CONCURRENCY clients for a fixed time on each path -> requests per second,
     latency under load, errors;
   - update_user_embedding (service role) latency, one at a time;
4. writes bench/results/edge-<videos>v.json. Targets (design document): < 200 ms per request,
   >= 100 requests per second, a user vector update < 2 s.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.machine import add_size_arguments, demo_size, machine
from twotower_pipeline import db
from twotower_pipeline.db.embedded import EmbeddedPostgres
from twotower_pipeline.db.migrations import apply_migrations
from twotower_pipeline.demo_data import generate_demo_data, load_demo_data
from twotower_pipeline.retrain import run_weekly_retrain
from twotower_pipeline.settings import PROJECT_ROOT, Settings

RESULTS = Path(__file__).resolve().parent / "results"
FUNCTIONS = PROJECT_ROOT / "supabase" / "functions"
TOOLS = PROJECT_ROOT / ".tools"
QUICK = {"ops": {"two_tower_model": {"config": {"epochs": 2, "feature_importance": False}}}}
TARGETS = {"request_ms": 200, "requests_per_second": 100, "update_seconds": 2.0}


def jwt(claims: dict, secret: str) -> str:
    """An HS256 JWT, as Supabase signs them with the project's JWT secret."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"iat": now, "exp": now + 3600, **claims}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Function:
    """One Edge Function served by `deno run` on a loopback port."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.port = name, free_port()
        deno = os.environ.get("TWOTOWER_DENO") or str(TOOLS / "node_modules" / ".bin" / "deno")
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [deno, "run", "--frozen", "--allow-env", "--allow-net", "--allow-read", f"{name}/index.ts"],
            cwd=FUNCTIONS, env={**env, "DENO_SERVE_ADDRESS": f"tcp:127.0.0.1:{self.port}"},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("OPTIONS", "/")
                if conn.getresponse().status == 204:
                    conn.close()
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{name} did not start: {Path(self.log.name).read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


class Client:
    """A keep-alive HTTP connection posting JSON to one function."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, body: dict, token: str) -> tuple[int, dict, float]:
        started = time.perf_counter()
        self.conn.request("POST", "/", body=json.dumps(body),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = self.conn.getresponse()
        payload = json.loads(response.read() or b"null")
        return response.status, payload, (time.perf_counter() - started) * 1000


def summary(latencies_ms: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(latencies_ms), 1), "p95": round(float(np.percentile(latencies_ms, 95)), 1),
            "max": round(max(latencies_ms), 1), "requests": len(latencies_ms)}


def sequential(port: int, requests: list[tuple[dict, str]], expect: str | None) -> list[float]:
    client, latencies = Client(port), []
    for body, token in requests:
        status, payload, ms = client.post(body, token)
        assert status == 200, payload
        assert expect is None or payload.get("user_vector") == expect, payload
        latencies.append(ms)
    return latencies


def load(port: int, requests: list[tuple[dict, str]], concurrency: int, seconds: float) -> dict[str, object]:
    """concurrency threads, each cycling through its share of requests until the time is up."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(index: int) -> None:
        client, mine = Client(port), requests[index::concurrency]
        i = 0
        while time.monotonic() < stop_at and i < 100_000:
            body, token = mine[i % len(mine)]
            try:
                status, payload, ms = client.post(body, token)
            except OSError as error:  # noqa: PERF203 - recorded, then a fresh connection
                with lock:
                    errors.append(repr(error))
                client = Client(port)
                continue
            with lock:
                if status == 200:
                    latencies.append(ms)
                else:
                    errors.append(f"{status}: {payload}")
            i += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "seconds": round(elapsed, 1),
            "requests_per_second": round(len(latencies) / elapsed, 1),
            "latency_ms": summary(latencies), "errors": len(errors), "error_examples": errors[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(parser)
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per path")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each throughput run")
    parser.add_argument("--updates", type=int, default=100)
    options = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="twotower-edge-bench-"))
    server = EmbeddedPostgres(state / "postgres")
    url = server.ensure_running()
    functions: list[Function] = []
    seconds: dict[str, float] = {}
    try:
        apply_migrations(url, PROJECT_ROOT / "supabase" / "migrations")
        os.environ.update({"TWOTOWER_HOME": str(state), "TWOTOWER_DATABASE_URL": url})
        for name in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME"):
            os.environ.pop(name, None)
        settings = Settings.from_env()
        settings.export_defaults()
        print(f"{options.videos:,} videos, {options.users:,} users, {options.likes:,} likes", flush=True)
        started = time.perf_counter()
        with db.connect(url) as conn:
            load_demo_data(conn, generate_demo_data(demo_size(options),
                                                    datetime.now(UTC)))
        seconds["demo data"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        outcome = run_weekly_retrain(settings, QUICK)
        assert outcome.success, outcome.reasons
        seconds["weekly retrain (2 epochs)"] = round(time.perf_counter() - started, 1)

        rng = np.random.default_rng(0)
        with db.connect(url) as conn:
            version = conn.execute("select version from public.embedding_model_versions "
                                   "where is_active and model_type = 'item_tower'").fetchone()[0]
            users = [r[0] for r in conn.execute(
                "select user_id::text from public.two_tower_user_embeddings where model_version = %s order by 1",
                (version,))]
            likes_per_user = [r[0] for r in conn.execute(
                "select count(*) from public.likes group by user_id")]
            rng.shuffle(users)
            # The computed path: these users' stored vectors are removed.
            computed_users, stored_users = users[:200], users[200:]
            conn.execute("delete from public.two_tower_user_embeddings where model_version = %s "
                         "and user_id = any(%s::uuid[])", (version, computed_users))
            pool_size = int(os.environ.get("TWO_TOWER_DB_POOL_SIZE", "4"))
        print(f"active version {version}; serving with Deno", flush=True)

        secret = secrets.token_urlsafe(32)
        env = {**os.environ, "SUPABASE_DB_URL": url, "SUPABASE_JWT_SECRET": secret, "NO_COLOR": "1",
               "DENO_DIR": os.environ.get("DENO_DIR") or str(TOOLS / "deno"), "DENO_NO_UPDATE_CHECK": "1"}
        recommend = Function("two_tower_recommendations", env)
        functions.append(recommend)
        update = Function("update_user_embedding", env)
        functions.append(update)

        def user_requests(ids: list[str], k: int = 10) -> list[tuple[dict, str]]:
            return [({"k": k}, jwt({"sub": u, "role": "authenticated"}, secret)) for u in ids]

        first = Client(recommend.port)
        status, payload, cold_ms = first.post(*user_requests(computed_users[:1])[0])
        assert status == 200 and payload["user_vector"] == "computed", payload
        print(f"  first computed request (loads the user tower): {cold_ms:.0f} ms", flush=True)
        sequential(recommend.port, user_requests(stored_users[:30]) + user_requests(computed_users[1:31]), None)

        sample = lambda ids: [ids[i] for i in rng.integers(0, len(ids), size=options.requests)]  # noqa: E731
        stored_ms = sequential(recommend.port, user_requests(sample(stored_users)), "stored")
        computed_ms = sequential(recommend.port, user_requests(sample(computed_users)), "computed")
        print(f"  one at a time: stored {summary(stored_ms)}, computed {summary(computed_ms)}", flush=True)
        stored_load = load(recommend.port, user_requests(stored_users), options.concurrency, options.seconds)
        print(f"  load, stored vectors: {stored_load}", flush=True)
        computed_load = load(recommend.port, user_requests(computed_users), options.concurrency, options.seconds)
        print(f"  load, computed vectors: {computed_load}", flush=True)

        service = jwt({"role": "service_role"}, secret)
        updates = [({"user_id": u}, service) for u in sample(computed_users)[:options.updates + 1]]
        update_cold_ms = sequential(update.port, updates[:1], None)[0]  # loads the user tower
        update_ms = sequential(update.port, updates[1:], None)
        print(f"  update_user_embedding: first {update_cold_ms:.0f} ms, then {summary(update_ms)}", flush=True)
        # After the updates the users served from a computed vector are served from the stored one.
        status, payload, _ = Client(recommend.port).post(*user_requests(computed_users[:1])[0])
        assert payload["user_vector"] in ("stored", "computed"), payload

        worst_p95 = max(summary(stored_ms)["p95"], summary(computed_ms)["p95"],
                        stored_load["latency_ms"]["p95"], computed_load["latency_ms"]["p95"])
        record = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "size": {"videos": options.videos, "users": options.users, "likes": options.likes,
                     "likes_per_user": {"median": int(np.median(likes_per_user)), "max": int(max(likes_per_user))}},
            "machine": machine(),
            "deno": subprocess.run([env.get("TWOTOWER_DENO") or str(TOOLS / "node_modules" / ".bin" / "deno"),
                                    "--version"], capture_output=True, text=True).stdout.split("\n")[0],
            "setup_seconds": seconds,
            "served_by": "deno run <function>/index.ts (Deno.serve) on 127.0.0.1, JWT verified in the function; "
                         "no gateway",
            "db_pool_per_function": pool_size,
            "recommendations": {
                "k": 10,
                "first_computed_request_ms (loads the user tower)": round(cold_ms, 1),
                "one_at_a_time_ms": {"stored vector": summary(stored_ms), "computed vector": summary(computed_ms)},
                "under_load": {"stored vector": stored_load, "computed vector": computed_load},
            },
            "update_user_embedding_ms": {"first (loads the user tower)": round(update_cold_ms, 1),
                                     "then": summary(update_ms)},
            "targets": TARGETS,
            "met": {
                "request_ms": worst_p95 < TARGETS["request_ms"],
                "requests_per_second": min(stored_load["requests_per_second"], computed_load["requests_per_second"])
                >= TARGETS["requests_per_second"],
                "update_seconds": max(update_cold_ms, *update_ms) / 1000 < TARGETS["update_seconds"],
            },
        }
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"edge-{options.videos}v.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2))
        print(f"written to {out}")
    finally:
        for function in functions:
            function.stop()
        server.stop()


if __name__ == "__main__":
    main()
