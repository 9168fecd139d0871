"""Bad input is counted and cleaned, or stops the line with a report naming the rule; every rule is
a Great Expectations expectation that real bad data can fail, and the run's Data Docs are written."""

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pydantic
import pytest

from twotower_pipeline.assets.data import DataQualityConfig, LikesWindow, training_data
from twotower_pipeline.gx_context import GxContext, data_docs_dir
from twotower_pipeline.validation import MAX_EXAMPLES, QualityRules, clean_likes, prepare_training_data

NOW = datetime(2026, 11, 1, tzinfo=UTC)
RULES = QualityRules(min_likes=100, min_users=10)


def _ids(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]


def _catalogue(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame({
        "id": _ids(n, 1), "title": [f"title {i}" for i in range(n)], "description": ["a quiet film"] * n,
        "genre": ["g"] * n, "maker": ["m"] * n, "price": [1000.0] * n, "duration_seconds": [3600] * n,
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


def test_clean_data_passes_every_rule_and_each_rule_is_a_gx_expectation():
    catalogue = _catalogue()
    likes = _likes(catalogue)
    data = prepare_training_data(catalogue, likes, NOW, RULES)
    assert data.passed, data.report()
    assert len(data.likes) == len(likes)
    assert {o.table for o in data.outcomes} == {"likes", "videos", "training window"}
    assert all(o.expectation.startswith("expect_") for o in data.outcomes)
    assert {o.expectation for o in data.outcomes} >= {
        "expect_column_values_to_not_be_null", "expect_column_values_to_be_between",
        "expect_compound_columns_to_be_unique", "expect_table_row_count_to_be_between",
        "expect_column_unique_value_count_to_be_between", "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex",
    }


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
    assert _outcome(data, "video_id is a video of the catalogue").bad_rows == 1  # a null video is not counted here
    assert _outcome(data, "user_id is present").bad_rows == 1
    assert _outcome(data, "video_id is present").bad_rows == 1
    assert _outcome(data, "created_at is not in the future").bad_rows == 1
    assert _outcome(data, "created_at is present").bad_rows == 0
    repeat = _outcome(data, "a user likes a video once")
    assert repeat.bad_rows == 2 and repeat.action.startswith("repeats dropped")  # both likes of the pair
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
    assert outcome.unexpected_percent == pytest.approx(50.0)
    assert len(outcome.examples) == MAX_EXAMPLES
    assert all(example.split(" / video ")[1] in set(unknown.video_id) for example in outcome.examples)
    described = outcome.describe()
    assert "video_id is a video of the catalogue" in described and "FAILED" in described
    assert "to fix:" in described and "max_invalid_like_share" in described


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

    assert data.passed, data.report()
    assert _outcome(data, "title and description without control characters").bad_rows == 1
    assert _outcome(data, "title and description together at most").bad_rows == 1
    assert _outcome(data, "at most 100 tags").bad_rows == 1
    assert _outcome(data, "at most 100 performers").bad_rows == 0
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
    assert "at least 1000 valid likes in the training window - observed 0" in reasons
    assert "at least 10 users with valid likes - observed 0" in reasons
    assert _outcome(data, "at least 1000 valid likes").bad_rows == 1000  # how many are missing


# -- every rule can fail ---------------------------------------------------------------------------

def _break(rule: str, catalogue: pd.DataFrame, likes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables with a fifth of the rows breaking ``rule`` (more than any default tolerance)."""
    catalogue, likes = catalogue.copy(), likes.copy()
    some_likes = likes.index[: len(likes) // 5]
    some_videos = catalogue.index[: len(catalogue) // 5]
    if rule == "likes.user_id_present":
        likes.loc[some_likes, "user_id"] = None
    elif rule == "likes.video_id_present":
        likes.loc[some_likes, "video_id"] = None
    elif rule == "likes.created_at_present":
        likes.loc[some_likes, "created_at"] = pd.NaT
    elif rule == "likes.created_at_not_future":
        likes.loc[some_likes, "created_at"] = NOW + timedelta(days=2)
    elif rule == "likes.video_known":
        likes.loc[some_likes, "video_id"] = [str(uuid.uuid4()) for _ in some_likes]
    elif rule == "likes.once_per_user_and_video":
        likes = pd.concat([likes, likes.loc[some_likes].assign(created_at=NOW - timedelta(minutes=1))])
    elif rule == "videos.price_in_range":
        catalogue.loc[some_videos, "price"] = -1.0
    elif rule == "videos.duration_in_range":
        catalogue.loc[some_videos, "duration_seconds"] = 0
    elif rule == "videos.text_length":
        catalogue.loc[some_videos, "description"] = "long " * 5_000
    elif rule == "videos.no_control_characters":
        catalogue.loc[some_videos, "title"] = "title\x00with a nul"
    elif rule == "videos.no_invisible_characters":
        catalogue.loc[some_videos, "title"] = "gpj.\u202eexe file"
    elif rule == "videos.no_stacked_marks":
        catalogue.loc[some_videos, "title"] = "z" + "\u0301" * 12 + "algo text"
    elif rule == "videos.has_words":
        catalogue.loc[some_videos, ["title", "description"]] = ["♥♥ !!", "🎬"]
    elif rule == "videos.performers_count":
        for i in some_videos:
            catalogue.at[i, "performers"] = [f"p{k}" for k in range(101)]
    elif rule == "videos.tags_count":
        for i in some_videos:
            catalogue.at[i, "tags"] = [f"t{k}" for k in range(101)]
    elif rule == "training_window.likes":
        likes = likes.iloc[::4]  # 50 likes, every user still there
    elif rule == "training_window.users":
        likes = _likes(catalogue, users=9, per_user=20)
    return catalogue, likes


RULE_KEYS = [
    "likes.user_id_present", "likes.video_id_present", "likes.created_at_present", "likes.created_at_not_future",
    "likes.video_known", "likes.once_per_user_and_video", "videos.price_in_range", "videos.duration_in_range",
    "videos.text_length", "videos.no_control_characters", "videos.no_invisible_characters",
    "videos.no_stacked_marks", "videos.has_words", "videos.performers_count", "videos.tags_count",
    "training_window.likes", "training_window.users",
]


def test_the_rules_are_the_ones_listed_here():
    catalogue = _catalogue()
    data = prepare_training_data(catalogue, _likes(catalogue), NOW, RULES)
    assert [o.key for o in data.outcomes] == RULE_KEYS


@pytest.mark.parametrize("key", RULE_KEYS)
def test_each_rule_fails_on_real_bad_data_with_counts_examples_and_a_way_out(key):
    catalogue = _catalogue()
    broken_catalogue, broken_likes = _break(key, catalogue, _likes(catalogue))
    data = prepare_training_data(broken_catalogue, broken_likes, NOW, RULES)

    assert [o.key for o in data.failures] == [key], data.report()
    failure = data.failures[0]
    assert failure.bad_rows > 0 and failure.fix
    if failure.unexpected_percent is not None:  # a rule on rows: how many, which share, which ones
        assert failure.unexpected_percent >= 10.0
        assert 0 < len(failure.examples) <= MAX_EXAMPLES
    else:  # a rule on the table: what was observed
        assert isinstance(failure.observed, int)
    described = failure.describe()
    assert described.startswith(f"[FAILED] {failure.table}: {failure.rule}") and "to fix:" in described


def test_the_cleaner_drops_exactly_the_likes_the_suite_counts():
    catalogue = _catalogue()
    likes = _likes(catalogue)
    for key in [k for k in RULE_KEYS if k.startswith("likes.") and k != "likes.once_per_user_and_video"]:
        _, broken = _break(key, catalogue, likes)
        data = prepare_training_data(catalogue, broken, NOW, RULES)
        outcome = next(o for o in data.outcomes if o.key == key)
        assert len(broken) - len(clean_likes(broken, set(catalogue.id), NOW)) == outcome.bad_rows, key


def test_no_tolerance_lets_every_row_be_bad():
    for field in ("max_invalid_like_share", "max_duplicate_like_share", "max_invalid_video_share",
                  "max_repaired_video_share"):
        with pytest.raises(pydantic.ValidationError):
            QualityRules(**{field: 1.0})
    with pytest.raises(pydantic.ValidationError):
        QualityRules(min_likes=0)


# -- one context per run, Data Docs, the asset check ----------------------------------------------

def test_one_context_validates_each_table_once_and_writes_data_docs(tmp_path):
    catalogue = _catalogue()
    likes = _likes(catalogue)
    quality = GxContext(data_docs_dir(tmp_path))
    _, bad = _break("likes.video_known", catalogue, likes)
    data = prepare_training_data(catalogue, bad, NOW, RULES, quality=quality)
    docs = quality.build_data_docs()

    assert not data.passed
    assert docs.index == tmp_path / "data_docs" / "index.html" and docs.index.is_file()
    assert set(docs.validation_pages) == {"likes", "videos", "training_window"}
    likes_page = docs.validation_pages["likes"].read_text(encoding="utf-8")
    assert "catalogue_video_id" in likes_page and "Failed" in likes_page
    assert (tmp_path / "data_docs" / "expectations" / "videos.html").is_file()
    with pytest.raises(ValueError, match="already validated"):
        prepare_training_data(catalogue, likes, NOW, RULES, quality=quality)


def test_the_data_quality_check_carries_each_expectation_and_links_the_data_docs(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOTOWER_HOME", str(tmp_path))
    catalogue = _catalogue()
    _, likes = _break("likes.video_known", catalogue, _likes(catalogue))

    @dg.asset(name="videos")
    def videos_snapshot() -> pd.DataFrame:
        return catalogue

    @dg.asset(name="raw_likes")
    def likes_snapshot() -> LikesWindow:
        return LikesWindow(likes=likes, since=NOW - timedelta(days=180), as_of=NOW)

    @dg.asset(name="user_profiles")
    def no_profiles() -> pd.DataFrame:
        return pd.DataFrame({"user_id": pd.Series(dtype=object), "age_range": pd.Series(dtype=object),
                             "region": pd.Series(dtype=object)})

    result = dg.materialize(
        [videos_snapshot, likes_snapshot, no_profiles, training_data], raise_on_error=False,
        run_config={"ops": {"training_data": {"config": {"min_likes": 100}}}},
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "data_quality" and not check.passed
    assert "video_id is a video of the catalogue" in check.description and "to fix:" in check.description
    metadata = {key: value.value for key, value in check.metadata.items()}
    assert metadata["failed_rules"] == 1
    assert metadata["unexpected.likes.video_known"] == len(likes) // 5
    assert metadata["unexpected.likes.user_id_present"] == 0
    assert metadata["observed.training_window.users"] == clean_likes(likes, set(catalogue.id), NOW).user_id.nunique()
    table = metadata["rules"]
    assert "`expect_column_values_to_not_be_null` | catalogue_video_id" in table
    assert "**FAILED**" in table and "user " in table  # examples of the bad likes
    assert metadata["data_docs"] == str(tmp_path / "data_docs" / "index.html")
    assert (tmp_path / "data_docs" / "index.html").is_file()
    assert metadata["data_docs_url"].startswith("file://")


def test_the_launchpad_config_is_the_quality_rules():
    assert issubclass(DataQualityConfig, QualityRules)
    assert DataQualityConfig().model_dump() == QualityRules().model_dump()
    with pytest.raises(pydantic.ValidationError):
        DataQualityConfig(max_invalid_like_share=1.0)
