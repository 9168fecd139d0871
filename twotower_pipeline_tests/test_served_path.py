"""What is served, in memory: inputs measured at the same kind of moment in training and serving,
item inputs as of each example, cold-start lists that are never empty, and users served whatever the
age of their likes."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from twotower_pipeline.demo_data import activity_summary, generate_demo_data
from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.dataset import UserSequences, next_like_examples
from twotower_pipeline.model.evaluation import evaluate_ranker
from twotower_pipeline.model.features import (
    POPULARITY_PER,
    ColdStart,
    PopularityIndex,
    latest_histories,
    popularity_shares,
)
from twotower_pipeline.model.preparation import prepare_training
from twotower_pipeline.model.serving_path import (
    SEGMENT_LIST_LENGTH,
    SERVED_BY_POPULARITY,
    SERVED_BY_SEGMENT,
    SERVED_BY_VECTOR,
    Snapshot,
    popular_videos,
    served_ranking,
    tune_cold_start,
    user_histories,
)
from twotower_pipeline.model.training import embed_items, embed_users, train_two_tower
from twotower_pipeline_tests.conftest import PUBLISHABLE

DAY = 86_400.0
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _ts(days: float) -> pd.Timestamp:
    return pd.Timestamp(NOW) + pd.Timedelta(days=days)


def _catalogue(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"{i:08x}-0000-4000-8000-000000000000" for i in range(n)], "title": "t", "description": "d",
        "genre": "g", "maker": "m", "price": 1000.0, "duration_seconds": 600.0, "created_at": _ts(-400),
        "performers": [[] for _ in range(n)], "tags": [[] for _ in range(n)],
    })


def _likes(rows: list[tuple[str, int, float]], catalogue: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [u for u, _, _ in rows], "video_id": [catalogue["id"][v] for _, v, _ in rows],
                         "created_at": [_ts(d) for _, _, d in rows]})


def test_popularity_counts_the_30_days_before_a_moment_and_never_the_like_itself():
    rows = np.array([0, 0, 0, 1, 1])
    seconds = np.array([0.0, 10 * DAY, 20 * DAY, 20 * DAY, 45 * DAY])
    index = PopularityIndex(rows, seconds)
    # Video 0 at day 20 (its own like then is not counted): the likes of days 0 and 10.
    assert index.counts(np.array([0]), np.array([20 * DAY])).tolist() == [2]
    # At day 35 the day-0 like has left the 30-day window; days 10 and 20 remain.
    assert index.counts(np.array([0]), np.array([35 * DAY])).tolist() == [2]
    assert index.counts(np.array([0]), np.array([45 * DAY])).tolist() == [1]
    assert index.counts(np.array([1]), np.array([45 * DAY])).tolist() == [1]  # not its own like at day 45
    # The input is a share of all likes in the window, so it does not grow with the app's traffic.
    assert index.shares(np.array([0]), np.array([21 * DAY])).tolist() == [POPULARITY_PER * 3 / 4]
    doubled = PopularityIndex(np.concatenate([rows, rows]), np.concatenate([seconds, seconds]))
    assert doubled.shares(np.array([0]), np.array([21 * DAY])).tolist() == [POPULARITY_PER * 3 / 4]


def test_training_examples_see_item_inputs_as_of_their_own_time():
    catalogue = _catalogue(3)
    likes = _likes([("a", 0, -90), ("b", 0, -60), ("a", 1, -50), ("c", 0, -40), ("b", 2, -30), ("c", 1, -20),
                    ("a", 2, -10), ("c", 2, -5)] + [(f"u{i}", i % 3, -80 + i) for i in range(40)], catalogue)
    prepared = prepare_training(catalogue, likes, TrainingConfig(min_training_examples=1), as_of=NOW)
    examples = prepared.train_examples
    for row, seconds in zip(examples.positive_rows, examples.positive_times):
        moment = pd.Timestamp(seconds * 1e9, unit="ns", tz="UTC")
        before = prepared.split.train[prepared.split.train["created_at"] < moment]
        expected = popularity_shares(catalogue["id"], before, moment)[row]
        np.testing.assert_allclose(prepared.numeric_at(np.array([row]), np.array([seconds]))[0, 2],
                                   prepared.spec.popularity.apply(np.array([expected]))[0], rtol=1e-6)


def test_history_ages_are_measured_from_the_newest_like_whenever_they_are_read():
    rows = [np.array([3, 4, 5])]
    times = [np.array([0.0, 2 * DAY, 5 * DAY])]
    day_after, ages_day_after = latest_histories(rows, times, np.array([6 * DAY]), pad_row=9, length=4)
    _, ages_two_months = latest_histories(rows, times, np.array([65 * DAY]), pad_row=9, length=4)
    assert day_after.tolist() == [[9, 3, 4, 5]]
    np.testing.assert_allclose(ages_day_after, [[0, 5, 3, 0]])
    np.testing.assert_array_equal(ages_day_after, ages_two_months)
    # A training example's history is read the same way: from its newest like, not from the target.
    examples = next_like_examples(UserSequences(np.array(["u"]), rows, times), pad_row=9, length=4)
    np.testing.assert_allclose(examples.history_age_days[-1], [0, 0, 2, 0])


def test_every_user_with_a_like_gets_a_history_however_old_the_likes():
    catalogue = _catalogue(4)
    likes = _likes([("recent", 0, -1), ("recent", 1, -0.5), ("old", 2, -400), ("old", 3, -390)], catalogue)
    snapshot = Snapshot.of(catalogue, likes, None, NOW)
    from twotower_pipeline.model.features import fit_feature_spec

    spec = fit_feature_spec(catalogue, likes, NOW)
    histories = user_histories(spec, snapshot)
    assert sorted(histories.user_ids) == ["old", "recent"]
    old = list(histories.user_ids).index("old")
    assert histories.likes_until[old] == _ts(-390)
    np.testing.assert_allclose(histories.inputs["hist_age_days"][old][-2:], [10, 0])


def test_cold_start_lists_follow_segments_and_never_run_dry_in_a_quiet_month():
    catalogue = _catalogue(6)
    # Everything happened two months ago: the last 30 days are quiet.
    rows = [(f"y{i}", 0, -60 + i * 0.1) for i in range(30)] + [(f"o{i}", 5, -61 + i * 0.1) for i in range(30)]
    rows += [("y0", 1, -62), ("o0", 4, -62)]
    likes = _likes(rows, catalogue)
    profiles = pd.DataFrame({
        "user_id": [f"y{i}" for i in range(30)] + [f"o{i}" for i in range(30)] + ["new_young", "new_nobody"],
        "age_range": ["18-24"] * 30 + ["55+"] * 30 + ["18-24", None],
        "region": ["Kanto"] * 60 + ["Kanto", None],
    })
    snapshot = Snapshot.of(catalogue, likes, profiles, NOW)
    popular = popular_videos(snapshot)
    assert (popular.scores[[0, 5]] > 0).all(), "a quiet month must not empty popularity"
    young, old = popular.segments[("18-24", "Kanto")], popular.segments[("55+", "Kanto")]
    assert young[0] == 0 and old[0] == 5  # each segment's favourite first
    assert len(young) <= SEGMENT_LIST_LENGTH
    assert popular.segment_of("18-24", "Kanto") == ("18-24", "Kanto")
    assert popular.segment_of(None, None) is None and popular.segment_of("99+", "Mars") is None


def test_users_without_likes_get_their_segment_then_everything_popular_never_what_they_liked():
    catalogue = _catalogue(6)
    rows = [(f"y{i}", 0, -5 + i * 0.01) for i in range(30)] + [(f"o{i}", 5, -5 + i * 0.01) for i in range(40)]
    rows += [("liker", 5, -1)]
    likes = _likes(rows, catalogue)
    profiles = pd.DataFrame({"user_id": [f"y{i}" for i in range(30)] + [f"o{i}" for i in range(40)] + ["new"],
                             "age_range": ["18-24"] * 30 + ["55+"] * 40 + ["18-24"],
                             "region": ["Kanto"] * 71})
    snapshot = Snapshot.of(catalogue, likes, profiles, NOW)
    from twotower_pipeline.model.features import fit_feature_spec

    spec = fit_feature_spec(catalogue, likes, NOW)
    ranking = served_ranking(snapshot, spec, lambda x: np.ones((len(x["hist_video_idx"]), 4), np.float32),
                             lambda x: np.eye(6, 4, dtype=np.float32), np.array(["new", "stranger", "liker"]))
    assert ranking.served_by.tolist() == [SERVED_BY_SEGMENT, SERVED_BY_POPULARITY, SERVED_BY_VECTOR]
    scores = ranking.scores(slice(0, 3))
    assert np.argmax(scores[0]) == 0  # the young segment's favourite, though video 5 is liked more overall
    assert np.argmax(scores[1]) == 5  # overall popularity
    assert ranking.seen[2].tolist() == [5]  # excluded from what the liker is recommended


def test_the_cold_start_choice_follows_what_served_the_newest_users_best():
    catalogue = _catalogue(8)
    # Old users: young ones like video 0, old ones video 5; overall, video 5 leads.
    rows = [(f"y{i}", 0, -60 + i * 0.1) for i in range(30)] + [(f"o{i}", 5, -60 + i * 0.1) for i in range(60)]
    # Newcomers in the last 28 days like their segment's favourite.
    rows += [(f"ny{i}", 0, -10 + i * 0.1) for i in range(30)] + [(f"no{i}", 5, -10 + i * 0.1) for i in range(30)]
    likes = _likes(rows, catalogue)
    ages = {"y": "18-24", "o": "55+", "ny": "18-24", "no": "55+"}
    users = sorted(set(likes["user_id"]))
    profiles = pd.DataFrame({"user_id": users, "age_range": [ages[u.rstrip("0123456789")] for u in users],
                             "region": "Kanto"})
    chosen, scores = tune_cold_start(Snapshot.of(catalogue, likes, profiles, NOW), k=1)
    assert chosen.segment_prior_likes is not None, scores  # segments served the young newcomers better
    assert max(scores.values()) == 1.0 and scores["half_life_14_segments_none"] == 0.5
    # Without profiles, segments cannot help: the overall order, the simplest choice, stays.
    plain, _ = tune_cold_start(Snapshot.of(catalogue, likes, None, NOW), k=1)
    assert plain == ColdStart(14.0, None)
    # Too few newcomers to tell: the defaults.
    few = likes[~likes["user_id"].str.startswith(("ny", "no")) | likes["user_id"].isin(["ny1", "no1"])]
    assert tune_cold_start(Snapshot.of(catalogue, few, profiles, NOW)) == (ColdStart(), {})


@pytest.fixture(scope="module")
def demo_model():
    """A model trained on demo data that has users who pause for weeks and come back."""
    data = generate_demo_data(PUBLISHABLE, datetime(2026, 11, 30, 3, tzinfo=UTC))
    catalogue, likes, profiles = data.pipeline_frames()
    trained = train_two_tower(catalogue, likes, TrainingConfig(epochs=8, batch_size=256), importance=False,
                              profiles=profiles, as_of=likes["created_at"].max() + pd.Timedelta(seconds=1))
    return catalogue, likes, profiles, trained


def test_a_user_served_two_months_after_their_last_like_is_served_as_well_as_the_day_after(demo_model):
    catalogue, likes, profiles, trained = demo_model
    gaps = activity_summary(likes, likes["created_at"].max())
    returners = gaps[(gaps["longest_gap_days"] >= 60) & gaps["back_after_gap_at"].notna()]
    assert len(returners) >= 10, "the demo data should have users who pause for two months and come back"
    returners = returners.head(20)
    recall = {"day after": [], "two months after": []}
    vectors = {}
    for user, row in returners.iterrows():
        back = pd.Timestamp(row["back_after_gap_at"])
        mine = likes[likes["user_id"] == user]
        before, after = mine[mine["created_at"] < back], mine[mine["created_at"] >= back]
        last = before["created_at"].max()
        for label, moment in (("day after", last + pd.Timedelta(days=1)), ("two months after", last + pd.Timedelta(days=60))):
            visible = likes[(likes["created_at"] < moment) & ((likes["user_id"] != user) | (likes["created_at"] <= last))]
            snapshot = Snapshot.of(catalogue, visible, profiles, moment)
            ranking = served_ranking(snapshot, trained.spec, lambda x: embed_users(trained.user_tower, x),
                                     lambda x: embed_items(trained.item_tower, x), np.array([user], dtype=object))
            relevant = catalogue.index[catalogue["id"].isin(after["video_id"].head(20))].to_numpy()
            metrics = evaluate_ranker(ranking.scores, ranking.holdout([relevant]), np.zeros(len(catalogue), int))
            recall[label].append(metrics["recall_at_50"])
            vectors.setdefault(user, []).append(embed_users(trained.user_tower,
                                                            user_histories(trained.spec, snapshot,
                                                                           only_users={user}).inputs))
    # The user's own inputs do not depend on when they are read: the same vector at both moments.
    for first, second in vectors.values():
        np.testing.assert_allclose(first, second, atol=1e-6)
    day_after, later = np.mean(recall["day after"]), np.mean(recall["two months after"])
    spread = np.std(np.subtract(recall["day after"], recall["two months after"])) / np.sqrt(len(returners))
    assert abs(day_after - later) <= max(3 * spread, 0.02), (day_after, later, spread)
