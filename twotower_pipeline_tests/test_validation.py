"""Bad input is counted and cleaned, or stops the line with a report naming the rule."""

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from twotower_pipeline.validation import QualityRules, prepare_training_data

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _ids(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]


def _catalogue(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame({
        "id": _ids(n, 1), "title": ["t"] * n, "description": ["d"] * n, "genre": ["g"] * n, "maker": ["m"] * n,
        "price": [1000.0] * n, "duration_seconds": [3600] * n,
        "created_at": [NOW - timedelta(days=400)] * n, "performers": [[]] * n, "tags": [[]] * n,
    })


def _likes(catalogue: pd.DataFrame, users: int = 20, per_user: int = 10) -> pd.DataFrame:
    user_ids = _ids(users, 2)
    rows = [
        (user_ids[u], catalogue["id"].iloc[(u * 7 + k) % len(catalogue)], NOW - timedelta(hours=u * per_user + k + 1))
        for u in range(users) for k in range(per_user)
    ]
    return pd.DataFrame(rows, columns=["user_id", "video_id", "created_at"])


def _outcome(data, rule_start: str):
    return next(o for o in data.outcomes if o.rule.startswith(rule_start))


def test_clean_data_passes_every_rule():
    catalogue = _catalogue()
    likes = _likes(catalogue)
    data = prepare_training_data(catalogue, likes, NOW, QualityRules(min_likes=100, min_users=10))
    assert data.passed, data.report()
    assert len(data.likes) == len(likes)


def test_a_few_bad_likes_are_dropped_and_counted_by_rule():
    catalogue = _catalogue()
    likes = _likes(catalogue, users=50, per_user=20)  # 1000 good likes
    users = likes.user_id.unique()
    unliked = catalogue.id[~catalogue.id.isin(likes.video_id[likes.user_id == users[2]])].iloc[0]
    bad = pd.DataFrame([
        (users[0], str(uuid.uuid4()), NOW - timedelta(days=1)),  # unknown video
        (None, likes.video_id[0], NOW - timedelta(days=1)),  # null user
        (users[1], None, NOW - timedelta(days=1)),  # null video
        (users[2], unliked, NOW + timedelta(days=3)),  # in the future
        (likes.user_id[3], likes.video_id[3], NOW - timedelta(minutes=1)),  # repeat of an earlier like
    ], columns=["user_id", "video_id", "created_at"])
    data = prepare_training_data(catalogue, pd.concat([likes, bad]), NOW, QualityRules(min_likes=100))

    assert data.passed, data.report()  # 1 bad row per rule out of 1005 is within tolerance
    assert len(data.likes) == len(likes)
    assert _outcome(data, "video_id is a video of the catalogue").bad_rows == 1
    assert _outcome(data, "user_id is present").bad_rows == 1
    assert _outcome(data, "video_id is present").bad_rows == 1
    assert _outcome(data, "created_at is present and not in the future").bad_rows == 1
    repeat = _outcome(data, "a user likes a video once")
    assert repeat.bad_rows == 1 and repeat.action.startswith("repeats dropped")
    # The earliest of the repeated likes is the one kept.
    kept = data.likes[(data.likes.user_id == likes.user_id[3]) & (data.likes.video_id == likes.video_id[3])]
    assert list(kept.created_at) == [likes.created_at[3]]


def test_many_likes_of_unknown_videos_block_training_with_examples():
    catalogue = _catalogue()
    likes = _likes(catalogue, users=20, per_user=10)
    unknown = likes.copy()
    unknown["video_id"] = [str(uuid.uuid4()) for _ in range(len(unknown))]
    data = prepare_training_data(catalogue, pd.concat([likes, unknown]), NOW, QualityRules(min_likes=100))

    assert not data.passed
    failed = [o.rule for o in data.failures]
    assert failed == ["video_id is a video of the catalogue"]
    outcome = data.failures[0]
    assert outcome.bad_rows == len(unknown) and outcome.total_rows == 2 * len(likes)
    assert len(outcome.examples) == 5
    assert all(example.split(" / video ")[1] in set(unknown.video_id) for example in outcome.examples)
    assert "video_id is a video of the catalogue" in outcome.describe() and "FAILED" in outcome.describe()


def test_negative_zero_nan_and_absurd_prices_and_durations_become_unknown():
    catalogue = _catalogue()
    catalogue.loc[0, "price"] = -500.0
    catalogue.loc[1, "price"] = float("nan")
    catalogue.loc[2, "duration_seconds"] = 0
    catalogue.loc[3, "duration_seconds"] = -60
    catalogue.loc[5, "price"] = 1e12
    catalogue.loc[6, "duration_seconds"] = 10 * 365 * 86_400
    data = prepare_training_data(catalogue, _likes(catalogue), NOW,
                                 QualityRules(min_likes=10, max_invalid_video_share=0.2))

    assert _outcome(data, "price is a number from 0").bad_rows == 2  # a missing price is not a broken one
    assert _outcome(data, "duration_seconds is > 0").bad_rows == 3
    assert np.isnan(data.catalogue.loc[0, "price"]) and np.isnan(data.catalogue.loc[5, "price"])
    assert np.isnan(data.catalogue.loc[3, "duration_seconds"]) and np.isnan(data.catalogue.loc[6, "duration_seconds"])
    assert data.catalogue.loc[4, "price"] == 1000.0
    assert data.passed


def test_hostile_text_and_huge_lists_are_cleaned_and_counted():
    catalogue = _catalogue()
    catalogue.loc[0, "title"] = "bad\x00\x07title\x1b[31m"
    catalogue.loc[1, "description"] = "word " * 50_000
    catalogue.at[2, "tags"] = [f"tag-{i}" for i in range(5_000)]
    catalogue.loc[3, "title"] = "'); drop table public.videos; --"
    data = prepare_training_data(catalogue, _likes(catalogue), NOW, QualityRules(min_likes=10))

    assert data.passed
    assert _outcome(data, "title and description without control characters").bad_rows == 1
    assert _outcome(data, "title and description together at most").bad_rows == 1
    assert _outcome(data, "at most 100 performers").bad_rows == 1
    assert "\x00" not in data.catalogue.loc[0, "title"] and "\x1b" not in data.catalogue.loc[0, "title"]
    assert len(data.catalogue.loc[1, "description"]) == 20_000
    assert data.catalogue.loc[3, "title"] == "'); drop table public.videos; --"  # text is data, kept as is


def test_an_empty_training_window_stops_the_line_with_a_readable_reason():
    catalogue = _catalogue()
    empty = pd.DataFrame({"user_id": pd.Series(dtype=object), "video_id": pd.Series(dtype=object),
                          "created_at": pd.Series(dtype="datetime64[ns, UTC]")})
    data = prepare_training_data(catalogue, empty, NOW, QualityRules(min_likes=1000, min_users=10))

    assert not data.passed
    reasons = data.report()
    assert "at least 1000 valid likes in the training window" in reasons
    assert "at least 10 users with valid likes" in reasons
