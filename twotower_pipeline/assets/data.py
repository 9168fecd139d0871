"""App data: the catalogue snapshot, the likes window, and the validated training data."""


from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from twotower_pipeline.app_data import LIKES_WINDOW_DAYS, read_catalogue, read_likes, read_profiles
from twotower_pipeline.assets import OWNERS, TRANSIENT_RETRIES, retries_only_transient
from twotower_pipeline.gx_context import DataDocs, GxContext, data_docs_dir
from twotower_pipeline.resources import AppDatabase
from twotower_pipeline.settings import Settings
from twotower_pipeline.validation import (
    QualityRules,
    RuleOutcome,
    TrainingData,
    prepare_training_data,
)

GROUP = "app_data"


class LikesWindowConfig(dg.Config):
    window_days: int = LIKES_WINDOW_DAYS  # training examples are the likes of this window


class DataQualityConfig(dg.Config, QualityRules):
    """The data-quality rules (fields, defaults, limits: :class:`QualityRules`), set in the launchpad."""


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


def _cell(text: str, limit: int = 90) -> str:
    """Text safe in one markdown table cell (titles may hold pipes, newlines and markup)."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("`", "'")


def _quality_table(data: TrainingData) -> str:
    lines = ["| table | rule | GX expectation | column | unexpected / observed | % | tolerated | result | "
             "what happened | examples |",
             "|---|---|---|---|---:|---:|---|---|---|---|"]
    for o in data.outcomes:
        examples = "<br>".join(_cell(e) for e in o.examples[:3]) or "-"
        found = f"{o.bad_rows} of {o.total_rows}" if o.unexpected_percent is not None else _cell(str(o.observed))
        percent = f"{o.unexpected_percent:.2f}" if o.unexpected_percent is not None else "-"
        lines.append(f"| {o.table} | {_cell(o.rule)} | `{o.expectation}` | {o.column or '-'} | {found} | {percent} | "
                     f"{o.tolerance} | {'ok' if o.passed else '**FAILED**'} | {_cell(o.action)} | {examples} |")
    return "\n".join(lines)


def _outcome_metadata(outcome: RuleOutcome) -> dict[str, dg.MetadataValue]:
    """Numbers Dagster plots run over run: bad rows per rule, observed counts for volume rules."""
    if outcome.unexpected_percent is not None:
        return {f"unexpected.{outcome.key}": dg.MetadataValue.int(outcome.bad_rows)}
    if isinstance(outcome.observed, int):
        return {f"observed.{outcome.key}": dg.MetadataValue.int(outcome.observed)}
    return {}


def _data_docs_metadata(docs: DataDocs | None) -> dict[str, dg.MetadataValue]:
    if docs is None:
        return {}
    links = {"data_docs": dg.MetadataValue.path(str(docs.index)),
             "data_docs_url": dg.MetadataValue.url(docs.index.as_uri())}
    for table, page in docs.validation_pages.items():
        links[f"data_docs_{table}"] = dg.MetadataValue.url(page.as_uri())
    return links


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "great_expectations"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    description="Cleaned catalogue and likes, validated with Great Expectations (one suite per table: "
    "likes, videos, training window; Data Docs in the state folder's data_docs). Bad rows are counted "
    "and dropped or repaired; too many of them fail the blocking data-quality check, which stops "
    "the line before training.",
    check_specs=[dg.AssetCheckSpec(
        "data_quality", asset="training_data", blocking=True,
        description="Every expectation of the likes, videos and training-window suites within its "
        "tolerance (Great Expectations; results and Data Docs in the metadata).",
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
    quality = GxContext(data_docs_dir(Settings.from_env().home))  # this run's one GX context
    data = prepare_training_data(videos, raw_likes.likes, raw_likes.as_of, config, user_profiles,
                                 window_start=raw_likes.since, quality=quality)
    docs = quality.build_data_docs()
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
    metadata = {
        "rules": dg.MetadataValue.md(_quality_table(data)),
        "failed_rules": dg.MetadataValue.int(len(failures)),
        "bad_like_rows": dg.MetadataValue.int(sum(o.bad_rows for o in data.outcomes if o.table == "likes")),
        "bad_video_rows": dg.MetadataValue.int(sum(o.bad_rows for o in data.outcomes if o.table == "videos")),
        **_data_docs_metadata(docs),
    }
    for outcome in data.outcomes:
        metadata.update(_outcome_metadata(outcome))
    yield dg.AssetCheckResult(
        passed=not failures,
        check_name="data_quality",
        severity=dg.AssetCheckSeverity.ERROR,
        description=("; ".join(f.describe() for f in failures) if failures else "all rules within tolerance"),
        metadata=metadata,
    )
