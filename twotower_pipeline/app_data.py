"""Reads the app's catalogue and likes from its PostgreSQL (the seed's training-data query).

The pipeline reads everything it learns from here, as in production; it never trusts the
rows (see :mod:`twotower_pipeline.validation`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

import adbc_driver_postgresql.dbapi
import pandas as pd
import pyarrow as pa
import sqlalchemy

from twotower_pipeline.model.dataset import LIKES_WINDOW_DAYS  # noqa: F401 - the training window

# {shards}: the shards to read (first hex digit of the id) as a text[] literal, or null for the whole
# catalogue. A literal, not a parameter: a query without parameters is streamed as binary COPY
# (twice as fast as a bound query's result at 1M videos).
CATALOGUE_QUERY = """
    select v.id::text as id, v.title, v.description, v.genre, v.maker,
           v.price::double precision as price, v.duration_seconds, v.created_at,
           coalesce(p.names, '{}') as performers,
           coalesce(t.names, '{}') as tags
    from public.videos v
    left join (
        select vp.video_id, array_agg(p.name order by p.name) as names
        from public.video_performers vp join public.performers p on p.id = vp.performer_id
        group by vp.video_id
    ) p on p.video_id = v.id
    left join (
        select vt.video_id, array_agg(t.name order by t.name) as names
        from public.video_tags vt join public.tags t on t.id = vt.tag_id
        group by vt.video_id
    ) t on t.video_id = v.id
    where {shards}::text[] is null or left(v.id::text, 1) = any({shards}::text[])
    order by v.id
"""

# Rows without a timestamp cannot be placed in the window, and rows stamped in the future
# (clock skew, bad imports) do not belong in it: both are read so validation counts them.
LIKES_QUERY = sqlalchemy.text(
    """
    select user_id::text as user_id, video_id::text as video_id, created_at
    from public.likes
    where cast(:since as timestamptz) is null or created_at >= :since or created_at is null
    order by created_at nulls first, user_id, video_id
    """
)


CATALOGUE_BATCH_ROWS = 25_000


def read_catalogue(source: sqlalchemy.Engine | str, shards: list[str] | None = None) -> pd.DataFrame:
    """The catalogue, or only the videos of some shards (first hex digit of the id), ordered by id."""
    frames = list(catalogue_batches(source, shards))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def catalogue_batches(source: sqlalchemy.Engine | str, shards: list[str] | None = None,
                      rows: int = CATALOGUE_BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The catalogue (or some shards) in frames of at most ``rows`` videos (:func:`catalogue_frame`),
    in id order; memory holds one frame of videos, not the catalogue."""
    return map(catalogue_frame, catalogue_tables(source, shards, rows))


def catalogue_tables(source: sqlalchemy.Engine | str, shards: list[str] | None = None,
                     rows: int = CATALOGUE_BATCH_ROWS) -> Iterator[pa.Table]:
    """The catalogue (or some shards) in Arrow tables of at most ``rows`` videos, in id order, as
    PostgreSQL sends it: columnar, through the ADBC driver's binary COPY. Always yields at least one
    (possibly empty) table."""
    with adbc_driver_postgresql.dbapi.connect(libpq_url(source)) as conn, conn.cursor() as cursor:
        # One query, one transaction (through a transaction pooler it stays on one server connection).
        cursor.execute(CATALOGUE_QUERY.replace("{shards}", _shards_literal(shards)))
        reader = cursor.fetch_record_batch()
        pending: list[pa.RecordBatch] = []
        held = 0
        yielded = False
        for batch in reader:
            while batch.num_rows:
                take = min(rows - held, batch.num_rows)
                pending.append(batch.slice(0, take))
                held += take
                batch = batch.slice(take)
                if held == rows:
                    yield pa.Table.from_batches(pending)
                    yielded, pending, held = True, [], 0
        if pending or not yielded:
            yield pa.Table.from_batches(pending, schema=reader.schema)


def _shards_literal(shards: list[str] | None) -> str:
    if shards is None:
        return "null"
    bad = [shard for shard in shards if not isinstance(shard, str) or not re.fullmatch("[0-9a-f]", shard)]
    if bad:
        raise ValueError(f"catalogue shards are the first hex digit of a video id (0-9, a-f), got {bad}")
    return "'{" + ",".join(shards) + "}'"


def catalogue_frame(table: pa.Table) -> pd.DataFrame:
    """read_catalogue's frame: text as str (None when missing), price and duration as numbers,
    created_at as UTC timestamps (nanoseconds), performers and tags as arrays of names."""
    frame = table.to_pandas()
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).astype("datetime64[ns, UTC]")
    return frame


def libpq_url(source: sqlalchemy.Engine | str) -> str:
    """A postgresql:// URL libpq (and so the ADBC driver) accepts, from a URL or an engine."""
    url = source if isinstance(source, str) else source.url.render_as_string(hide_password=False)
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def read_likes(engine: sqlalchemy.Engine, since: datetime | None = None) -> pd.DataFrame:
    """The likes since ``since``, or all of them."""
    with engine.connect() as conn:
        frame = pd.read_sql(LIKES_QUERY, conn, params={"since": since})
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def read_video_ids(engine: sqlalchemy.Engine) -> set[str]:
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(sqlalchemy.text("select id::text from public.videos"))}


PROFILES_QUERY = sqlalchemy.text(
    "select id::text as user_id, age_range, region from public.profiles where id is not null order by id"
)


def read_profiles(engine: sqlalchemy.Engine) -> pd.DataFrame:
    """Users' optional demographics (age range, region); empty where the app has no profiles table."""
    with engine.connect() as conn:
        exists = conn.execute(sqlalchemy.text("select to_regclass('public.profiles') is not null")).scalar_one()
        if not exists:
            return pd.DataFrame({"user_id": pd.Series(dtype=object), "age_range": pd.Series(dtype=object),
                                 "region": pd.Series(dtype=object)})
        return pd.read_sql(PROFILES_QUERY, conn)
