"""Reads the app's catalogue and likes from its PostgreSQL (the seed's training-data query).

The pipeline reads everything it learns from here, as in production; it never trusts the
rows (see :mod:`twotower_pipeline.validation`).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy

from twotower_pipeline.model.dataset import LIKES_WINDOW_DAYS  # noqa: F401 - the training window

CATALOGUE_QUERY = sqlalchemy.text(
    """
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
    where cast(:shards as text[]) is null or left(v.id::text, 1) = any(cast(:shards as text[]))
    order by v.id
    """
)

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


def read_catalogue(engine: sqlalchemy.Engine, shards: list[str] | None = None) -> pd.DataFrame:
    """The catalogue, or only the videos of some shards (first hex digit of the id)."""
    with engine.connect() as conn:
        frame = pd.read_sql(CATALOGUE_QUERY, conn, params={"shards": shards})
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["performers"] = frame["performers"].map(list)
    frame["tags"] = frame["tags"].map(list)
    return frame


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
