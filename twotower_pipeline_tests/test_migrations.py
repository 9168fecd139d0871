"""The schema's one source of truth is supabase/migrations, applied as the Supabase CLI would."""

from pathlib import Path

import psycopg
import pytest

from twotower_pipeline.db.migrations import MigrationError, apply_migrations, discover_migrations

SEED_COLUMNS = {
    "videos": {"id", "title", "description", "genre", "maker", "price", "duration_seconds", "created_at"},
    "tags": {"id", "name"},
    "video_tags": {"video_id", "tag_id"},
    "performers": {"id", "name"},
    "video_performers": {"video_id", "performer_id"},
    "likes": {"user_id", "video_id", "created_at"},
    "embedding_model_versions": {"id", "version", "model_type", "model_path", "is_active", "created_at"},
    "feature_importance": {"id", "model_version_id", "feature_name", "importance_score"},
    "video_embeddings": {"video_id", "embedding"},
    "user_embeddings": {"user_id", "embedding"},
}


def _columns(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, bool, bool]]:
    rows = conn.execute(
        "select column_name, data_type, is_nullable = 'YES', column_default is not null "
        "from information_schema.columns where table_schema = 'public' and table_name = %s",
        (table,),
    ).fetchall()
    return {name: (dtype, nullable, has_default) for name, dtype, nullable, has_default in rows}


def test_applies_every_file_once_and_records_it_like_the_supabase_cli(empty_database_url, migrations_dir):
    files = discover_migrations(migrations_dir)
    first = apply_migrations(empty_database_url, migrations_dir)
    second = apply_migrations(empty_database_url, migrations_dir)

    assert [m.version for m in first] == [m.version for m in files]
    assert second == []
    with psycopg.connect(empty_database_url) as conn:
        history = conn.execute(
            "select version, name, statements from supabase_migrations.schema_migrations order by version"
        ).fetchall()
    assert [(v, n) for v, n, _ in history] == [(m.version, m.name) for m in files]
    assert all(statements == [m.sql] for (_, _, statements), m in zip(history, files))


def test_seed_tables_keep_the_seed_column_names_and_uuid_ids(database_url):
    with psycopg.connect(database_url) as conn:
        for table, expected in SEED_COLUMNS.items():
            columns = _columns(conn, table)
            assert expected <= set(columns), f"{table} lacks {expected - set(columns)}"
            for name, (dtype, _, _) in columns.items():
                if name == "id" or name.endswith("_id") and name != "mlflow_run_id":
                    assert dtype == "uuid", f"{table}.{name} is {dtype}"


def test_added_columns_are_nullable_or_defaulted_so_app_writes_keep_working(database_url):
    with psycopg.connect(database_url) as conn:
        conn.execute("insert into public.embedding_model_versions (version, model_type) values ('v1', 'user_tower')")
        for table in ("embedding_model_versions", "videos", "likes"):
            for name, (_, nullable, has_default) in _columns(conn, table).items():
                if table in SEED_COLUMNS and name in SEED_COLUMNS[table] | {"id"}:
                    continue
                assert nullable or has_default, f"{table}.{name} is added NOT NULL without a default"


def test_a_failing_migration_is_rolled_back_and_not_recorded(empty_database_url, migrations_dir, tmp_path: Path):
    for migration in discover_migrations(migrations_dir):
        (tmp_path / migration.path.name).write_text(migration.sql)
    (tmp_path / "29990101000000_broken.sql").write_text(
        "create table public.half_done (id int);\nselect * from table_that_does_not_exist;\n"
    )
    with pytest.raises(MigrationError, match="29990101000000_broken.sql"):
        apply_migrations(empty_database_url, tmp_path)
    with psycopg.connect(empty_database_url) as conn:
        versions = {r[0] for r in conn.execute("select version from supabase_migrations.schema_migrations")}
        half_done = conn.execute("select to_regclass('public.half_done')").fetchone()[0]
    assert "29990101000000" not in versions
    assert half_done is None
    assert {m.version for m in discover_migrations(migrations_dir)} <= versions


def test_a_migration_file_with_a_bad_name_is_refused(tmp_path: Path):
    (tmp_path / "add_table.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match="<timestamp>_<name>.sql"):
        discover_migrations(tmp_path)


def test_tables_that_already_exist_in_the_app_database_are_left_as_they_are(empty_database_url, migrations_dir):
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("create table public.videos (id uuid primary key default gen_random_uuid(), title text, "
                     "description text, genre text, maker text, price numeric, duration_seconds integer, "
                     "created_at timestamptz default now())")
        conn.execute("insert into public.videos (title) values ('already here')")
    apply_migrations(empty_database_url, migrations_dir)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("select title from public.videos").fetchall() == [("already here",)]


def test_a_database_without_pgvector_gets_a_clear_error_and_nothing_applied(empty_database_url, migrations_dir):
    """A role that may create tables but not the extension, as on a server without pgvector."""
    import secrets

    password = secrets.token_urlsafe(12)
    role = f"app_{secrets.token_hex(4)}"
    database = empty_database_url.rpartition("/")[2]
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(f"create role {role} login password '{password}'")
        conn.execute(f"grant create, connect on database {database} to {role}")
        conn.execute(f"grant create on schema public to {role}")
    host = empty_database_url.split("@", 1)[1]
    with pytest.raises(MigrationError, match="needs the pgvector extension"):
        apply_migrations(f"postgresql://{role}:{password}@{host}", migrations_dir)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("select to_regclass('public.videos')").fetchone()[0] is None
        assert conn.execute("select count(*) from supabase_migrations.schema_migrations").fetchone()[0] == 0


def test_migrations_partly_applied_by_hand_are_completed(empty_database_url, migrations_dir):
    first, *rest = discover_migrations(migrations_dir)
    with psycopg.connect(empty_database_url) as conn:
        conn.execute(first.sql.encode())  # someone ran the first file in psql, untracked
        conn.execute("create table public.two_tower_item_embeddings (model_version text not null, "
                     "video_id uuid not null, embedding vector(64) not null, popularity real not null default 0, "
                     "created_at timestamptz not null default now(), primary key (model_version, video_id)) "
                     "partition by list (model_version)")
    applied = apply_migrations(empty_database_url, migrations_dir)
    assert [m.version for m in applied] == [m.version for m in [first, *rest]]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("select count(*) from public.recommend_videos(gen_random_uuid(), 3)").fetchone()[0] == 0
