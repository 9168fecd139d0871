"""The demo data as the app stores it: one frame per app table, with exactly its column names.

Everything else in the generator works on indices; only here do they become the rows (random
UUIDs, names, timestamps) the app and the pipeline read, so the hidden structure never leaks
into a column and the pipeline sees nothing a real database would not show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from twotower_pipeline.demo_data.activity import Activity
from twotower_pipeline.demo_data.catalogue import Catalogue
from twotower_pipeline.demo_data.communities import Communities
from twotower_pipeline.demo_data.draws import uuid_strings
from twotower_pipeline.demo_data.profiles import AGE_RANGES, REGIONS, Profiles
from twotower_pipeline.demo_data.size import LIKE_WINDOW, DemoSize
from twotower_pipeline.demo_data.truth import DemoTruth
from twotower_pipeline.demo_data.users import Users

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "videos": ("id", "title", "description", "genre", "maker", "price", "duration_seconds", "created_at"),
    "tags": ("id", "name"),
    "video_tags": ("video_id", "tag_id"),
    "performers": ("id", "name"),
    "video_performers": ("video_id", "performer_id"),
    "likes": ("id", "user_id", "video_id", "created_at"),
    "profiles": ("id", "age_range", "region", "created_at"),
}
DEMO_TABLES: tuple[str, ...] = tuple(TABLE_COLUMNS)
"""The app tables the demo data fills, in load order (parents before children)."""


@dataclass(frozen=True, eq=False)  # frames have no single truth value; compare them with pandas
class DemoData:
    """One frame per app table, with exactly the app's column names."""

    videos: pd.DataFrame
    tags: pd.DataFrame
    video_tags: pd.DataFrame
    performers: pd.DataFrame
    video_performers: pd.DataFrame
    likes: pd.DataFrame
    profiles: pd.DataFrame  # id is the user's id (likes.user_id); ~20% of users have none
    truth: DemoTruth | None = field(default=None, repr=False)
    """What the likes were drawn from (not an app table; never loaded)."""

    def pipeline_frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The catalogue, likes and profiles as the pipeline reads them from the database
        (read_catalogue's format and order, read_likes', read_profiles'), without a database."""
        performers = (self.video_performers.merge(self.performers, left_on="performer_id", right_on="id")
                      .groupby("video_id")["name"].agg(sorted))
        tags = self.video_tags.merge(self.tags, left_on="tag_id", right_on="id").groupby("video_id")["name"].agg(sorted)
        catalogue = self.videos.assign(
            performers=self.videos["id"].map(performers).map(lambda names: names if isinstance(names, list) else []),
            tags=self.videos["id"].map(tags).map(lambda names: names if isinstance(names, list) else []),
        ).sort_values("id", kind="stable").reset_index(drop=True)
        likes = self.likes[["user_id", "video_id", "created_at"]].sort_values(
            ["created_at", "user_id", "video_id"], kind="stable").reset_index(drop=True)
        profiles = (self.profiles.rename(columns={"id": "user_id"})[["user_id", "age_range", "region"]]
                    .sort_values("user_id").reset_index(drop=True))
        return catalogue, likes, profiles

    def counts(self) -> dict[str, int]:
        return {table: len(getattr(self, table)) for table in DEMO_TABLES}


def build_frames(
    rng: np.random.Generator,
    size: DemoSize,
    catalogue: Catalogue,
    users: Users,
    communities: Communities,
    activity: Activity,
    like_user: np.ndarray,
    like_video: np.ndarray,
    like_s: np.ndarray,
    profiles: Profiles,
    now_s: int,
) -> DemoData:
    video_ids = np.array(uuid_strings(rng, size.videos), dtype=object)
    tag_ids = np.array(uuid_strings(rng, len(catalogue.tag_names)), dtype=object)
    performer_ids = np.array(uuid_strings(rng, len(catalogue.performer_names)), dtype=object)
    user_ids = np.array(uuid_strings(rng, size.users), dtype=object)
    like_ids = np.array(uuid_strings(rng, size.likes), dtype=object)

    videos = pd.DataFrame(
        {
            "id": video_ids,
            "title": catalogue.titles,
            "description": catalogue.descriptions,
            "genre": np.array(catalogue.genre_names, dtype=object)[catalogue.genre_of_video],
            "maker": np.array(catalogue.maker_names, dtype=object)[catalogue.maker_of_video],
            "price": catalogue.price.astype(np.float64),
            "duration_seconds": catalogue.duration_s.astype(np.int64),
            "created_at": pd.to_datetime(catalogue.created_s, unit="s", utc=True),
        }
    )
    tag_rows, tag_items = catalogue.video_tag_pairs
    performer_rows, performer_items = catalogue.video_performer_pairs
    order = np.lexsort((like_video, like_user, like_s))  # by time, as the app would have written them
    likes = pd.DataFrame(
        {
            "id": like_ids,
            "user_id": user_ids[like_user[order]],
            "video_id": video_ids[like_video[order]],
            "created_at": pd.to_datetime(like_s[order], unit="s", utc=True),
        }
    )
    window_s = int(LIKE_WINDOW.total_seconds())
    return DemoData(
        videos=videos,
        tags=pd.DataFrame({"id": tag_ids, "name": catalogue.tag_names}),
        video_tags=pd.DataFrame({"video_id": video_ids[tag_rows], "tag_id": tag_ids[tag_items]}),
        performers=pd.DataFrame({"id": performer_ids, "name": catalogue.performer_names}),
        video_performers=pd.DataFrame(
            {"video_id": video_ids[performer_rows], "performer_id": performer_ids[performer_items]}
        ),
        likes=likes,
        profiles=pd.DataFrame(
            {
                "id": user_ids[profiles.user],
                "age_range": _labels(AGE_RANGES, profiles.age_range),
                "region": _labels(REGIONS, profiles.region),
                "created_at": pd.to_datetime(profiles.created_s, unit="s", utc=True),
            }
        ),
        truth=DemoTruth(
            user_ids=user_ids,
            video_ids=video_ids,
            start_taste=users.start_taste,
            end_taste=users.end_taste,
            drift_midpoint=users.drift_midpoint,
            drift_width=users.drift_width,
            price_sensitivity=users.price_sensitivity,
            video_vectors=catalogue.vectors,
            popularity=catalogue.popularity,
            log_relative_price=catalogue.log_relative_price,
            created_s=catalogue.created_s.astype(np.int64),
            window_start_s=now_s - window_s,
            window_s=window_s,
            community_of_video=communities.of_video,
            community_logit=communities.logit,
            followed=communities.followed,
            follow_weight=communities.follow_weight,
            community_share=communities.share,
            active_until_s=activity.active_until_s,
            pause_s=activity.pause_s,
        ),
    )


def _labels(names: tuple[str, ...], index: np.ndarray) -> np.ndarray:
    """Names for indices, None (NULL) where the index is -1."""
    return np.array([*names, None], dtype=object)[index]
