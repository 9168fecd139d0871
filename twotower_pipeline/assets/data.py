"""App data: the catalogue snapshot, the likes window, and the validated training data."""


from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from twotower_pipeline.app_data import LIKES_WINDOW_DAYS, read_catalogue, read_likes, read_profiles
from twotower_pipeline.assets import OWNERS, TRANSIENT_RETRIES, retries_only_transient
from twotower_pipeline.resources import AppDatabase
from twotower_pipeline.validation import (
    QualityRules,
    TrainingData,
    prepare_training_data,
)

GROUP = "app_data"


class LikesWindowConfig(dg.Config):
    window_days: int = LIKES_WINDOW_DAYS  # training examples are the likes of this window


class DataQualityConfig(dg.Config):
    max_invalid_like_share: float = 0.01
    max_duplicate_like_share: float = 0.10
    max_invalid_video_share: float = 0.01
    min_likes: int = 1_000
    min_users: int = 10


@dataclass
class LikesWindow:
    """Every like, as stored; ``since`` starts the training window (older likes are histories only)."""

    likes: pd.DataFrame
    since: datetime
    as_of: datetime


@dg.asset(
    group_name=GROUP,
    kinds={"postgres", "pandas"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    description="Snapshot of the app's catalogue: videos with genre, maker, price, duration, text, "
    "performers and tags.",
)
@retries_only_transient
def videos(context: dg.AssetExecutionContext, app_db: AppDatabase) -> dg.Output[pd.DataFrame]:
    with app_db.engine() as engine:
        frame = read_catalogue(engine)
    has_text = (frame["title"].fillna("").str.strip() != "") | (frame["description"].fillna("").str.strip() != "")
    return dg.Output(
        frame,
        metadata={
            "videos": dg.MetadataValue.int(len(frame)),
            "genres": dg.MetadataValue.int(int(frame["genre"].nunique())),
            "makers": dg.MetadataValue.int(int(frame["maker"].nunique())),
            "videos_with_text_share": dg.MetadataValue.float(float(has_text.mean()) if len(frame) else 0.0),
            "median_price": dg.MetadataValue.float(float(frame["price"].median()) if len(frame) else 0.0),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"postgres", "pandas"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    description="The app's likes, as stored: all of them. Training examples are the likes of the training "
    "window (default: the last six months); a user's older likes still form their history, and every "
    "user with a like is served from it.",
)
@retries_only_transient
def raw_likes(
    context: dg.AssetExecutionContext, config: LikesWindowConfig, app_db: AppDatabase
) -> dg.Output[LikesWindow]:
    as_of = datetime.now(UTC)
    since = as_of - timedelta(days=config.window_days)
    with app_db.engine() as engine:
        frame = read_likes(engine)
    timestamps = frame["created_at"].dropna()
    in_window = frame["created_at"] >= pd.Timestamp(since)
    return dg.Output(
        LikesWindow(likes=frame, since=since, as_of=as_of),
        metadata={
            "likes": dg.MetadataValue.int(len(frame)),
            "likes_in_window": dg.MetadataValue.int(int(in_window.sum())),
            "users": dg.MetadataValue.int(int(frame["user_id"].nunique())),
            "users_only_before_window": dg.MetadataValue.int(
                int(frame["user_id"].nunique() - frame.loc[in_window, "user_id"].nunique())),
            "window_start": dg.MetadataValue.timestamp(since),
            "newest_like": dg.MetadataValue.text(str(timestamps.max()) if len(timestamps) else "none"),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"postgres", "pandas"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    description="Users' optional demographics (age range, region) from the app's profiles table; "
    "empty where the app has none (the user tower then treats every user's demographics as unknown).",
)
@retries_only_transient
def user_profiles(context: dg.AssetExecutionContext, app_db: AppDatabase) -> dg.Output[pd.DataFrame]:
    with app_db.engine() as engine:
        frame = read_profiles(engine)
    return dg.Output(frame, metadata={
        "profiles": dg.MetadataValue.int(len(frame)),
        "with_age_range_share": dg.MetadataValue.float(float(frame["age_range"].notna().mean()) if len(frame) else 0.0),
        "with_region_share": dg.MetadataValue.float(float(frame["region"].notna().mean()) if len(frame) else 0.0),
    })


def _quality_table(data: TrainingData) -> str:
    lines = ["| table | rule | bad rows | of | tolerated | result | what happened | examples |",
             "|---|---|---:|---:|---|---|---|---|"]
    for o in data.outcomes:
        examples = "<br>".join(o.examples[:3]) or "-"
        lines.append(f"| {o.table} | {o.rule} | {o.bad_rows} | {o.total_rows} | {o.tolerance} | "
                     f"{'ok' if o.passed else '**FAILED**'} | {o.action} | {examples} |")
    return "\n".join(lines)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "great_expectations"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    description="Cleaned catalogue and likes, validated with Great Expectations. Bad rows are counted "
    "and dropped or repaired; too many of them fail the blocking data-quality check, which stops "
    "the line before training.",
    check_specs=[dg.AssetCheckSpec(
        "data_quality", asset="training_data", blocking=True,
        description="Every validation rule within its tolerance (Great Expectations).",
    )],
)
@retries_only_transient
def training_data(
    context: dg.AssetExecutionContext,
    config: DataQualityConfig,
    videos: pd.DataFrame,
    raw_likes: LikesWindow,
    user_profiles: pd.DataFrame,
):
    rules = QualityRules(**config.model_dump())
    data = prepare_training_data(videos, raw_likes.likes, raw_likes.as_of, rules, user_profiles,
                                 window_start=raw_likes.since)
    dropped = len(raw_likes.likes) - len(data.likes)
    yield dg.Output(
        data,
        metadata={
            "likes": dg.MetadataValue.int(len(data.likes)),
            "likes_in_window": dg.MetadataValue.int(int(data.window_likes().shape[0])),
            "likes_dropped": dg.MetadataValue.int(dropped),
            "users": dg.MetadataValue.int(int(data.likes["user_id"].nunique())),
            "videos": dg.MetadataValue.int(len(data.catalogue)),
            "liked_videos": dg.MetadataValue.int(int(data.likes["video_id"].nunique())),
            "users_with_profile": dg.MetadataValue.int(len(data.profiles) if data.profiles is not None else 0),
        },
    )
    failures = data.failures
    yield dg.AssetCheckResult(
        passed=not failures,
        check_name="data_quality",
        severity=dg.AssetCheckSeverity.ERROR,
        description=("; ".join(f.describe() for f in failures) if failures else "all rules within tolerance"),
        metadata={
            "rules": dg.MetadataValue.md(_quality_table(data)),
            "failed_rules": dg.MetadataValue.int(len(failures)),
            "bad_like_rows": dg.MetadataValue.int(sum(o.bad_rows for o in data.outcomes if o.table == "likes")),
            "bad_video_rows": dg.MetadataValue.int(sum(o.bad_rows for o in data.outcomes if o.table == "videos")),
        },
    )
