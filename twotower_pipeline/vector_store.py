"""Model versions and their 64-d vectors in the app's PostgreSQL (pgvector).

Each version's vectors live in their own partitions (created by the migrations' SQL
functions). Writes are binary COPY into that partition, replacing what was there for the
same videos, so a rerun gives the same rows. Activation checks completeness, then flips the
active version of both towers in one transaction: readers see the old version or the new
one, never a mix.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
from psycopg import sql

ITEM_TABLE = "two_tower_item_embeddings"
USER_TABLE = "two_tower_user_embeddings"
SHARDS = tuple("0123456789abcdef")
KEEP_VERSIONS = 3  # versions whose vectors are kept for rollback
UNIT_NORM_TOLERANCE = 1e-3
_COPY_BATCH = 5_000


class ActivationRefused(RuntimeError):
    """The version cannot be activated now; nothing was changed."""


class IncompleteVersion(ActivationRefused):
    """Some videos or users (possibly ones that just arrived) have no vector of the version yet."""


ANY_ACTIVE = object()  # activate_version(expected_active=...) when no particular version is expected


def partition_name(conn: psycopg.Connection, table: str, version: str) -> str:
    return conn.execute("select public.two_tower_partition_name(%s, %s)", (table, version)).fetchone()[0]


def create_version_partitions(conn: psycopg.Connection, version: str) -> None:
    conn.execute("select public.two_tower_create_version_partitions(%s)", (version,))


def check_dimension(conn: psycopg.Connection, table: str, vectors: np.ndarray) -> None:
    """Refuse to write vectors whose size is not the column's (e.g. a column altered by hand)."""
    _check_shape(table, column_dimension(conn, table), vectors)


def column_dimension(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(
        "select atttypmod from pg_attribute where attrelid = %s::regclass and attname = 'embedding'",
        (f"public.{table}",),
    ).fetchone()[0]


def _check_shape(table: str, dimension: int, vectors: np.ndarray) -> None:
    if vectors.ndim != 2 or (len(vectors) and vectors.shape[1] != dimension):
        size = vectors.shape[1] if vectors.ndim == 2 else vectors.shape
        raise ValueError(
            f"column public.{table}.embedding is vector({dimension}) but the model makes {size}-d vectors; "
            "restore the column as supabase/migrations define it (vector(64)) or export a 64-d model"
        )


def _copy_vectors(
    conn: psycopg.Connection, partition: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[tuple]
) -> int:
    statement = sql.SQL("copy public.{} ({}) from stdin with (format binary)").format(
        sql.Identifier(partition), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    written = 0
    with conn.cursor().copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
            written += 1
    return written


def write_item_vectors(
    conn: psycopg.Connection,
    version: str,
    shards: Sequence[str],
    video_ids: Sequence[str],
    vectors: np.ndarray,
    popularity: np.ndarray,
    replace_shards: bool = True,
) -> int:
    """Write the version's item vectors of ``shards`` in the caller's transaction: replacing every row
    of those shards (a backfill), or only the rows of these videos (a top-up of new videos)."""
    if replace_shards:
        return copy_item_vectors(conn, version, shards, iter([(video_ids, vectors, popularity)]))
    check_dimension(conn, ITEM_TABLE, np.asarray(vectors))
    partition = _lock_shards(conn, version, shards)
    conn.execute(sql.SQL("delete from public.{} where video_id = any(%s::uuid[])").format(
        sql.Identifier(partition)), (list(video_ids),))
    return _copy_item_rows(conn, version, partition, iter([(video_ids, vectors, popularity)]),
                           dimension=None)  # checked above


def copy_item_vectors(conn: psycopg.Connection, version: str, shards: Sequence[str],
                      chunks: Iterator[tuple[Sequence[str], np.ndarray, np.ndarray]]) -> int:
    """Replace every row of the version's ``shards`` with ``chunks`` of (video ids, vectors,
    popularity), in the caller's transaction, as one binary COPY: chunks are written as they come,
    so a re-embed can stream. Readers see the old rows until the transaction commits."""
    dimension = column_dimension(conn, ITEM_TABLE)
    partition = _lock_shards(conn, version, shards)
    conn.execute(
        sql.SQL("delete from public.{} where left(video_id::text, 1) = any(%s)").format(sql.Identifier(partition)),
        (list(shards),),
    )
    return _copy_item_rows(conn, version, partition, chunks, dimension)


def _lock_shards(conn: psycopg.Connection, version: str, shards: Sequence[str]) -> str:
    for shard in sorted(shards):
        # Two writers of one shard queue up here; the second replaces the first's rows.
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"{version}/{shard}",))
    return partition_name(conn, ITEM_TABLE, version)


def _copy_item_rows(conn: psycopg.Connection, version: str, partition: str,
                    chunks: Iterator[tuple[Sequence[str], np.ndarray, np.ndarray]], dimension: int | None) -> int:
    statement = sql.SQL("copy public.{} (model_version, video_id, embedding, popularity) from stdin "
                        "with (format binary)").format(sql.Identifier(partition))
    written = 0
    with conn.cursor().copy(statement) as copy:
        for video_ids, vectors, popularity in chunks:
            vectors = np.asarray(vectors, dtype=np.float32)
            if dimension is not None:
                _check_shape(ITEM_TABLE, dimension, vectors)
            if not len(video_ids):
                continue
            copy.write((b"" if written else _COPY_SIGNATURE) + _item_rows(version, video_ids, vectors, popularity))
            written += len(video_ids)
        if written:
            copy.write(_COPY_TRAILER)
    return written


# PostgreSQL's binary COPY: a signature, then per row the field count and each field's length and bytes
# (big-endian), then a trailer. Item rows are fixed-size (the version is one string), so a chunk's rows
# are one numpy record array: no Python object per row (the rows' encoding took 3.5 s per 1M videos
# row by row, holding the interpreter while the next chunk's inputs waited).
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def _item_rows(version: str, video_ids: Sequence[str], vectors: np.ndarray, popularity: np.ndarray) -> bytes:
    """Rows (version text, video uuid, vector, popularity float4) in binary COPY format; a vector is
    pgvector's binary form: int16 dimensions, int16 unused, float4 values."""
    name = version.encode()
    dimensions = vectors.shape[1]
    row = np.dtype([("fields", ">i2"), ("name_size", ">i4"), ("name", f"V{len(name)}"), ("id_size", ">i4"),
                    ("id", "V16"), ("vector_size", ">i4"), ("dimensions", ">i2"), ("unused", ">i2"),
                    ("vector", ">f4", (dimensions,)), ("popularity_size", ">i4"), ("popularity", ">f4")])
    rows = np.zeros(len(video_ids), row)
    rows["fields"] = 4
    rows["name_size"] = len(name)
    rows["name"] = np.frombuffer(name, dtype=f"V{len(name)}")[0]
    rows["id_size"] = 16
    rows["id"] = np.frombuffer(_uuid_bytes(video_ids), dtype="V16")
    rows["vector_size"] = 4 + 4 * dimensions
    rows["dimensions"] = dimensions
    rows["vector"] = vectors
    rows["popularity_size"] = 4
    rows["popularity"] = np.asarray(popularity, dtype=np.float32)
    return rows.tobytes()


def _uuid_bytes(video_ids: Sequence[str]) -> bytes:
    """The 16 bytes of each id, one after another; an id that is not a UUID is refused naming it."""
    text = "".join(map(str, video_ids)).replace("-", "")
    if len(text) == 32 * len(video_ids):  # PostgreSQL's uuid text: the fast path
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    parts = []
    for video in video_ids:
        try:
            parts.append(uuid.UUID(str(video)).bytes)
        except ValueError:
            raise ValueError(f"video id {video!r} is not a UUID; item vectors are written only for catalogue "
                             "videos (public.videos.id)") from None
    return b"".join(parts)


def write_user_vectors(
    conn: psycopg.Connection, version: str, user_ids: Sequence[str], vectors: np.ndarray,
    likes_until: Sequence[datetime], replace_all: bool = True,
) -> int:
    """Write the version's user vectors in the caller's transaction: replacing all of them, or only
    these users' (a top-up). DELETE, not TRUNCATE: readers of the partition are never blocked and
    see the old rows until the transaction commits."""
    check_dimension(conn, USER_TABLE, np.asarray(vectors))
    partition = partition_name(conn, USER_TABLE, version)
    conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"{version}/users",))
    if replace_all:
        conn.execute(sql.SQL("delete from public.{}").format(sql.Identifier(partition)))
    else:
        conn.execute(sql.SQL("delete from public.{} where user_id = any(%s::uuid[])").format(
            sql.Identifier(partition)), (list(user_ids),))
    rows = (
        (version, uuid.UUID(uid), vec.astype(np.float32), until)
        for uid, vec, until in zip(user_ids, vectors, likes_until)
    )
    return _copy_vectors(conn, partition, ("model_version", "user_id", "embedding", "likes_until"),
                         ("text", "uuid", "vector", "timestamptz"), rows)


# A user the app serves from a vector: one valid like (stamped, not in the future, of a catalogue video)
# of any age. The training window bounds training, not who is served.
_SERVED_USERS = (
    "select distinct l.user_id from public.likes l "
    "where l.user_id is not null and l.created_at <= now() and l.video_id in (select id from public.videos)"
)


def users_without_vectors(conn: psycopg.Connection, version: str) -> set[str]:
    """Users with a valid like and no vector of the version."""
    users = sql.Identifier(partition_name(conn, USER_TABLE, version))
    rows = conn.execute(sql.SQL(
        "select a.user_id::text from (" + _SERVED_USERS + ") a "
        "where not exists (select 1 from public.{} u where u.user_id = a.user_id)"
    ).format(users)).fetchall()
    return {row[0] for row in rows}


def write_popular_videos(conn: psycopg.Connection, version: str,
                         lists: Sequence[tuple[str, str, Sequence[str], Sequence[float]]]) -> int:
    """Replace the version's cold-start lists (age range, region, video ids best first, scores) in the
    caller's transaction."""
    conn.execute("delete from public.two_tower_popular_videos where model_version = %s", (version,))
    rows = ((version, age_range, region, rank, uuid.UUID(video), float(score))
            for age_range, region, videos, scores in lists
            for rank, (video, score) in enumerate(zip(videos, scores), start=1))
    statement = sql.SQL("copy public.two_tower_popular_videos (model_version, age_range, region, rank, video_id, "
                        "score) from stdin with (format binary)")
    written = 0
    with conn.cursor().copy(statement) as copy:
        copy.set_types(("text", "text", "text", "int4", "uuid", "float4"))
        for row in rows:
            copy.write_row(row)
            written += 1
    return written


def build_item_index(conn: psycopg.Connection, version: str, m: int = 16, ef_construction: int = 128) -> None:
    conn.execute("select public.two_tower_build_item_index(%s, %s, %s)", (version, m, ef_construction))


def repair_item_index(conn: psycopg.Connection, version: str) -> bool:
    """After rows of an indexed partition were replaced: VACUUM, so the HNSW graph drops the old rows.
    Until then the deleted rows stay in the graph and searches miss some of the new ones (seen: a
    served top 10 missing its true 10th video after a full re-embed). ``conn`` must be in autocommit."""
    part = partition_name(conn, ITEM_TABLE, version)
    indexed = conn.execute("select to_regclass(%s) is not null", (f"public.{part}_hnsw",)).fetchone()[0]
    if indexed:
        conn.execute(sql.SQL("vacuum (analyze) public.{}").format(sql.Identifier(part)))
    return bool(indexed)


@dataclass(frozen=True)
class Completeness:
    version: str
    catalogue_videos: int
    item_vectors: int
    missing_videos_by_shard: dict[str, int]
    active_users: int
    user_vectors: int
    missing_users: int
    bad_item_vectors: int
    bad_user_vectors: int

    @property
    def problems(self) -> list[str]:
        found = []
        if self.missing_videos_by_shard:
            shards = ", ".join(f"{s} ({n} videos)" for s, n in sorted(self.missing_videos_by_shard.items()))
            found.append(f"item-embedding partitions missing videos: {shards}; re-run those partitions")
        if self.missing_users:
            found.append(f"{self.missing_users} of {self.active_users} users with likes have no vector; "
                         "re-run the user embeddings")
        if self.bad_item_vectors or self.bad_user_vectors:
            found.append(f"{self.bad_item_vectors} item and {self.bad_user_vectors} user vectors are not "
                         "unit length")
        return found


def check_completeness(conn: psycopg.Connection, version: str) -> Completeness:
    """Does every catalogue video and every user with a valid like have a sound vector?"""
    items = sql.Identifier(partition_name(conn, ITEM_TABLE, version))
    users = sql.Identifier(partition_name(conn, USER_TABLE, version))
    missing = missing_videos_by_shard(conn, version)
    catalogue_videos = conn.execute("select count(*) from public.videos").fetchone()[0]
    item_vectors = conn.execute(sql.SQL("select count(*) from public.{}").format(items)).fetchone()[0]
    active_users, missing_users = conn.execute(sql.SQL(
        "select count(*), count(*) filter (where not exists "
        "  (select 1 from public.{} u where u.user_id = a.user_id)) "
        "from (" + _SERVED_USERS + ") a"
    ).format(users)).fetchone()
    user_vectors = conn.execute(sql.SQL("select count(*) from public.{}").format(users)).fetchone()[0]
    # pgvector refuses NaN and infinity on input, so a sound vector only needs unit length.
    bad_condition = sql.SQL("select count(*) from public.{} where abs(vector_norm(embedding) - 1) > %s")
    bad_items = conn.execute(bad_condition.format(items), (UNIT_NORM_TOLERANCE,)).fetchone()[0]
    bad_users = conn.execute(bad_condition.format(users), (UNIT_NORM_TOLERANCE,)).fetchone()[0]
    return Completeness(
        version=version,
        catalogue_videos=catalogue_videos,
        item_vectors=item_vectors,
        missing_videos_by_shard=missing,
        active_users=active_users,
        user_vectors=user_vectors,
        missing_users=missing_users,
        bad_item_vectors=bad_items,
        bad_user_vectors=bad_users,
    )


@dataclass(frozen=True)
class TowerRecord:
    model_type: str  # 'user_tower' | 'item_tower'
    model_path: str
    mlflow_model_version: str | None = None


def register_version(
    conn: psycopg.Connection,
    version: str,
    towers: Sequence[TowerRecord],
    feature_spec_path: str,
    mlflow_run_id: str | None,
    metrics: dict[str, float],
    feature_importance: dict[str, float] | None = None,
) -> None:
    """Record a trained version as a candidate (idempotent: a re-export updates its rows).

    Feature importance rows go to the tower they describe ('user: ...' or 'item: ...').
    """
    clean_metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    for tower in towers:
        row_id = conn.execute(
            """
            insert into public.embedding_model_versions
              (version, model_type, model_path, feature_spec_path, mlflow_run_id, mlflow_model_version, metrics)
            values (%s, %s, %s, %s, %s, %s, %s)
            on conflict (version, model_type) do update set
              model_path = excluded.model_path, feature_spec_path = excluded.feature_spec_path,
              mlflow_run_id = excluded.mlflow_run_id, mlflow_model_version = excluded.mlflow_model_version,
              metrics = excluded.metrics
            returning id
            """,
            (version, tower.model_type, tower.model_path, feature_spec_path, mlflow_run_id,
             tower.mlflow_model_version, json.dumps(clean_metrics)),
        ).fetchone()[0]
        conn.execute("delete from public.feature_importance where model_version_id = %s", (row_id,))
        prefix = tower.model_type.split("_")[0] + ":"
        rows = [(row_id, name, float(score)) for name, score in (feature_importance or {}).items()
                if name.startswith(prefix) and math.isfinite(score)]
        if rows:
            conn.cursor().executemany(
                "insert into public.feature_importance (model_version_id, feature_name, importance_score) "
                "values (%s, %s, %s)", rows)


@dataclass(frozen=True)
class VersionRecord:
    version: str
    user_tower_path: str
    item_tower_path: str
    feature_spec_path: str
    metrics: dict[str, float]
    mlflow_run_id: str | None
    status: str
    is_active: bool
    activated_at: datetime | None


def version_record(conn: psycopg.Connection, version: str) -> VersionRecord | None:
    rows = conn.execute(
        "select model_type, model_path, feature_spec_path, metrics, mlflow_run_id, status, is_active, activated_at "
        "from public.embedding_model_versions where version = %s", (version,)
    ).fetchall()
    towers = {row[0]: row for row in rows}
    if set(towers) != {"user_tower", "item_tower"}:
        return None
    item = towers["item_tower"]
    return VersionRecord(version, towers["user_tower"][1], item[1], item[2], dict(item[3] or {}), item[4],
                         item[5], bool(item[6]), item[7])


@dataclass(frozen=True)
class VersionSummary:
    version: str
    status: str
    is_active: bool
    created_at: datetime
    activated_at: datetime | None
    metrics: dict[str, float]
    vectors_kept: bool
    status_reason: str | None


def version_summaries(conn: psycopg.Connection) -> list[VersionSummary]:
    """Every registered version, newest first, with whether its vectors are still kept (rollback targets)."""
    rows = conn.execute(
        "select version, status, is_active, created_at, activated_at, metrics, status_reason, "
        "to_regclass('public.' || public.two_tower_partition_name('two_tower_item_embeddings', version)) is not null "
        "from public.embedding_model_versions where model_type = 'item_tower' order by created_at desc, version desc"
    ).fetchall()
    return [VersionSummary(version, status, bool(active), created, activated, dict(metrics or {}), bool(kept),
                           reason) for version, status, active, created, activated, metrics, reason, kept in rows]


def active_record(conn: psycopg.Connection) -> VersionRecord | None:
    version = active_version(conn)
    return version_record(conn, version) if version else None


def live_versions(conn: psycopg.Connection) -> list[str]:
    """Versions whose item vectors must follow the catalogue: the active one and any candidate
    registered after it whose vectors are being written (a retrain in flight)."""
    rows = conn.execute(
        """
        select version from public.embedding_model_versions
        where model_type = 'item_tower'
          and (is_active or (status = 'candidate' and created_at > coalesce(
               (select max(created_at) from public.embedding_model_versions where is_active), '-infinity')))
        order by created_at
        """
    ).fetchall()
    return [version for (version,) in rows if has_vectors(conn, version)]


def missing_videos_by_shard(conn: psycopg.Connection, version: str, written_shards_only: bool = False
                            ) -> dict[str, int]:
    """Catalogue videos without a vector of ``version``, per shard. With ``written_shards_only``,
    shards the version has no vector in at all (a backfill still to run) are left out."""
    items = sql.Identifier(partition_name(conn, ITEM_TABLE, version))
    rows = conn.execute(sql.SQL(
        "select left(v.id::text, 1), count(*) from public.videos v "
        "where not exists (select 1 from public.{} e where e.video_id = v.id) group by 1"
    ).format(items)).fetchall()
    missing = {shard: count for shard, count in rows}
    if written_shards_only and missing:
        written = {row[0] for row in conn.execute(sql.SQL(
            "select distinct left(video_id::text, 1) from public.{}").format(items))}
        missing = {shard: count for shard, count in missing.items() if shard in written}
    return missing


def embedded_video_ids(conn: psycopg.Connection, version: str, shards: Sequence[str]) -> set[str]:
    items = sql.Identifier(partition_name(conn, ITEM_TABLE, version))
    rows = conn.execute(sql.SQL("select video_id::text from public.{} where left(video_id::text, 1) = any(%s)")
                        .format(items), (list(shards),)).fetchall()
    return {row[0] for row in rows}


def rollback_target(conn: psycopg.Connection) -> str | None:
    """The most recently active version other than the current one whose vectors are kept."""
    rows = conn.execute(
        "select version from public.embedding_model_versions where model_type = 'item_tower' "
        "and not is_active and activated_at is not null order by activated_at desc"
    ).fetchall()
    return next((version for (version,) in rows if has_vectors(conn, version)), None)


def record_gate(conn: psycopg.Connection, version: str, gate: dict) -> None:
    """Keep the promotion gate's decision with the version (its comparison, interval and verdict)."""
    conn.execute("update public.embedding_model_versions set metrics = metrics || jsonb_build_object('gate', %s::jsonb) "
                 "where version = %s", (json.dumps(gate), version))


def reject_version(conn: psycopg.Connection, version: str, reason: str) -> None:
    """Record that this version will not serve (the gate refused it, or it could not be activated)
    and drop its vectors: only versions that have served are kept for rollback."""
    updated = conn.execute(
        "update public.embedding_model_versions set status = 'rejected', status_reason = %s "
        "where version = %s and not is_active", (reason, version)
    ).rowcount
    if updated:
        conn.execute("select public.two_tower_drop_version(%s)", (version,))


def has_vectors(conn: psycopg.Connection, version: str) -> bool:
    return all(
        conn.execute("select to_regclass(format('public.%%I', %s::text))",
                     (partition_name(conn, table, version),)).fetchone()[0] is not None
        for table in (ITEM_TABLE, USER_TABLE)
    )


def active_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "select version from public.embedding_model_versions where is_active and model_type = 'item_tower'"
    ).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class Activation:
    version: str
    previous: str | None
    dropped: list[str]
    already_active: bool = False


def activate_version(
    conn: psycopg.Connection,
    version: str,
    expected_active: object = ANY_ACTIVE,
    keep_versions: int = KEEP_VERSIONS,
) -> Activation:
    """Make ``version`` the active one for both towers, and apply retention, in one transaction.

    With ``expected_active`` (the champion the gate compared against), the switch happens only if
    that is still the active version: a version activated meanwhile is never replaced unseen.
    Activating the active version again changes nothing (a retried step). Raises ActivationRefused
    (IncompleteVersion when vectors are missing); then nothing was changed.
    """
    with conn.transaction():
        # Serialises activations, rollbacks and retention; readers are not blocked.
        conn.execute("select pg_advisory_xact_lock(hashtext('two_tower_activation'))")
        current = active_version(conn)
        if current == version:
            return Activation(version, None, [], already_active=True)
        if expected_active is not ANY_ACTIVE and current != expected_active:
            raise ActivationRefused(
                f"the active version changed from {expected_active or 'none'} to {current or 'none'} since the "
                f"promotion gate compared {version} with it; retrain to compare against the new champion"
            )
        towers = conn.execute(
            "select count(*) from public.embedding_model_versions where version = %s", (version,)
        ).fetchone()[0]
        if towers != 2:
            raise ActivationRefused(
                f"model version {version} is not registered with both towers; export it before activating"
            )
        if not has_vectors(conn, version):
            raise ActivationRefused(
                f"model version {version} has no stored vectors (never embedded, or dropped by retention); "
                "re-run its item and user embeddings first"
            )
        report = check_completeness(conn, version)
        if report.problems:
            raise IncompleteVersion(f"model version {version} cannot be activated: " + "; ".join(report.problems))
        conn.execute(
            "update public.embedding_model_versions set is_active = false, status = 'retired' "
            "where is_active and version <> %s", (version,)
        )
        conn.execute(
            "update public.embedding_model_versions set is_active = true, status = 'active', "
            "status_reason = null, activated_at = now() where version = %s", (version,)
        )
        dropped = drop_old_versions(conn, keep_versions)
    return Activation(version, current, dropped)


def drop_old_versions(conn: psycopg.Connection, keep: int) -> list[str]:
    """Keep the vectors of the ``keep`` most recently active versions (the active one included) and
    of candidates still in flight; drop the rest. Returns the versions dropped now."""
    rows = conn.execute(
        """
        select version, bool_or(is_active), max(activated_at), min(status)
        from public.embedding_model_versions group by version
        order by bool_or(is_active) desc, max(activated_at) desc nulls last, version desc
        """
    ).fetchall()
    served = [version for version, _, activated_at, _ in rows if activated_at is not None]
    dropped = []
    for version, is_active, activated_at, status in rows:
        stale = (activated_at is not None and version not in served[:keep]) or status == "rejected"
        if stale and not is_active and has_vectors(conn, version):
            conn.execute("select public.two_tower_drop_version(%s)", (version,))
            dropped.append(version)
    return dropped
