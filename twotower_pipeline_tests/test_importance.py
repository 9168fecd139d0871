"""Permutation importance: shuffles that leave the padding mask alone, repeated, with a spread that
tells a decisive input from a useless one (towers made by hand, so the truth is known)."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.evaluation import HoldoutUsers, evaluate_ranker, vector_scores
from twotower_pipeline.model.importance import (
    FEATURE_GROUPS,
    HISTORY_INPUTS,
    ROWS,
    FeatureGroup,
    GroupImportance,
    permutation_importance,
    served_recall,
    shuffle_group,
)
from twotower_pipeline.model.preparation import prepare_training
from twotower_pipeline.reporting import importance_png

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
GENRES = 6
PRICE_WEIGHT = 0.5


def _histories(users: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """History inputs of users with 0 to 100 likes (front-padded with 0s, as served)."""
    h = 100
    lengths = rng.integers(0, h + 1, users)
    valid = np.arange(h)[None, :] >= h - lengths[:, None]
    inputs = {
        "hist_video_idx": np.where(valid, rng.integers(1, 500, (users, h)), 0),
        "hist_genre_idx": np.where(valid, rng.integers(1, 8, (users, h)), 0),
        "hist_maker_idx": np.where(valid, rng.integers(1, 8, (users, h)), 0),
        "hist_price": np.where(valid, rng.normal(size=(users, h)), 0.0).astype(np.float32),
        "hist_age_days": np.where(valid, rng.uniform(0, 90, (users, h)), 0.0).astype(np.float32),
        "user_age_range_idx": rng.integers(1, 4, users), "user_region_idx": rng.integers(1, 4, users),
    }
    return inputs


@pytest.mark.parametrize("group", [g for g in FEATURE_GROUPS if g.startswith("user: ") and "whole" not in g
                                   and "demographics" not in g])
def test_a_history_shuffle_moves_values_among_valid_positions_and_keeps_every_mask(group):
    rng = np.random.default_rng(0)
    inputs = _histories(40, rng)
    shuffled = shuffle_group(inputs, FEATURE_GROUPS[group], np.random.default_rng(1))
    valid = inputs["hist_video_idx"] > 0
    np.testing.assert_array_equal(shuffled["hist_video_idx"] > 0, valid)  # each user's mask and length
    (name,) = FEATURE_GROUPS[group].inputs
    assert not np.array_equal(shuffled[name], inputs[name])
    np.testing.assert_array_equal(shuffled[name][~valid], inputs[name][~valid])  # padding untouched
    np.testing.assert_array_equal(np.sort(shuffled[name][valid]), np.sort(inputs[name][valid]))  # same values
    # Values travel between users, not only within one user's history.
    moved_users = sum(not np.array_equal(np.sort(shuffled[name][u][valid[u]]), np.sort(inputs[name][u][valid[u]]))
                      for u in range(40) if valid[u].sum() > 1)
    assert moved_users > 30
    for other in inputs:
        if other != name:
            assert shuffled[other] is inputs[other]


def test_whole_histories_and_item_rows_move_together():
    rng = np.random.default_rng(0)
    inputs = _histories(30, rng)
    shuffled = shuffle_group(inputs, FEATURE_GROUPS["user: whole history"], np.random.default_rng(2))
    # Find where each user's history went: every history input went along, mask included.
    source = [next(v for v in range(30) if np.array_equal(shuffled["hist_video_idx"][u], inputs["hist_video_idx"][v]))
              for u in range(30)]
    for name in HISTORY_INPUTS:
        np.testing.assert_array_equal(shuffled[name], inputs[name][source])
    np.testing.assert_array_equal(shuffled["user_region_idx"], inputs["user_region_idx"])
    items = {"numeric": rng.normal(size=(50, 4)), "genre_idx": rng.integers(1, 5, 50)}
    price = shuffle_group(items, FEATURE_GROUPS["item: price"], np.random.default_rng(3))
    np.testing.assert_array_equal(price["numeric"][:, 1:], items["numeric"][:, 1:])  # only its column
    assert not np.array_equal(price["numeric"][:, 0], items["numeric"][:, 0])
    assert price["genre_idx"] is items["genre_idx"]


def test_served_recall_is_evaluate_rankers_recall():
    rng = np.random.default_rng(4)
    users, items = rng.normal(size=(300, 8)), rng.normal(size=(2_000, 8))
    seen = [rng.choice(2_000, rng.integers(0, 60), replace=False) for _ in range(300)]
    relevant = [np.setdiff1d(rng.choice(2_000, 8, replace=False), s)[:5] for s in seen]
    expected = evaluate_ranker(vector_scores(users, items), HoldoutUsers(seen, relevant), np.zeros(2_000, int))
    assert served_recall(users, items, seen, relevant) == pytest.approx(expected["recall_at_50"], abs=1e-12)
    assert 0.0 < expected["recall_at_50"] < 0.2


@pytest.fixture(scope="module")
def genre_world():
    """1,200 videos in 6 genres; each user likes videos of one genre only, at random within it, so
    the genre decides what they like next and the price says nothing about it."""
    rng = np.random.default_rng(7)
    n = 1_200
    catalogue = pd.DataFrame({
        "id": [f"{i:08x}-0000-4000-8000-000000000000" for i in range(n)], "title": "t", "description": "d",
        "genre": [f"g{i % GENRES}" for i in range(n)], "maker": [f"m{i % 7}" for i in range(n)],
        "price": np.exp(rng.normal(7.0, 1.0, n)), "duration_seconds": 600.0,
        "created_at": pd.Timestamp(NOW) - pd.Timedelta(days=400),
        "performers": [[] for _ in range(n)], "tags": [[] for _ in range(n)],
    })
    rows = []
    for u in range(150):
        genre = u % GENRES
        count = int(rng.integers(8, 40))  # histories of different lengths: masks differ between users
        liked = rng.choice(np.arange(genre, n, GENRES), count, replace=False)
        days = np.sort(rng.uniform(-150, -1, count))
        rows += [(f"user-{u:04d}", catalogue["id"][v], pd.Timestamp(NOW) + pd.Timedelta(days=d))
                 for v, d in zip(liked, days)]
    likes = pd.DataFrame(rows, columns=["user_id", "video_id", "created_at"])
    prepared = prepare_training(catalogue, likes, TrainingConfig(), as_of=NOW)
    size = prepared.spec.genres.size

    def users_of(x):
        # The genre distribution of the history (under the mask hist_video_idx > 0, as the tower's),
        # and the mean price of the liked videos: used, but it says nothing about the next like.
        mask = (x["hist_video_idx"] > 0).astype(np.float64)
        count = np.maximum(mask.sum(axis=1), 1.0)
        distribution = (np.eye(size)[x["hist_genre_idx"]] * mask[..., None]).sum(axis=1) / count[:, None]
        price = (x["hist_price"] * mask).sum(axis=1) / count
        return np.concatenate([distribution, PRICE_WEIGHT * price[:, None]], axis=1)

    def items_of(x):
        return np.concatenate([np.eye(size)[x["genre_idx"]], PRICE_WEIGHT * x["numeric"][:, :1]], axis=1)

    return prepared, users_of, items_of


def test_a_decisive_input_ranks_first_and_a_useless_ones_interval_covers_zero(genre_world):
    prepared, users_of, items_of = genre_world
    importance = permutation_importance(prepared, users_of, items_of, repeats=5, seed=3)
    assert set(importance) == set(FEATURE_GROUPS)
    assert all(value.repeats == 5 for value in importance.values())
    decisive = importance["user: genres of liked videos"]
    useless = importance["user: prices of liked videos"]
    assert decisive.low > 0.1, decisive  # shuffled genres lose most of the recall, every time
    assert useless.std > 0, useless  # the price moves the ranking...
    assert useless.covers_zero(), useless  # ...but not for better or worse
    assert importance["item: price"].covers_zero(), importance["item: price"]
    assert importance["item: genre"].low > 0.1
    assert importance["user: whole history"].low > 0.1
    ranked = sorted(importance, key=lambda g: importance[g].mean, reverse=True)
    assert ranked.index("user: genres of liked videos") < ranked.index("user: prices of liked videos")
    # These towers never look at the video ids of the history, only at the mask they define: moving
    # ids among valid positions leaves every mask, so nothing changes. (Shuffling the ids across
    # users, as before, moved the masks of the genre distribution with them.)
    assert importance["user: liked videos"] == GroupImportance(0.0, 0.0, 5)
    across_users = FeatureGroup("user", ("hist_video_idx",), ROWS)  # the old shuffle, for contrast
    confounded = permutation_importance(prepared, users_of, items_of, repeats=5, seed=3,
                                        groups={"liked videos across users": across_users})
    assert confounded["liked videos across users"].std > 0
    assert importance["user: demographics"] == GroupImportance(0.0, 0.0, 5)
    for unused in ("item: video id", "item: maker", "item: tags", "item: popularity"):
        assert importance[unused] == GroupImportance(0.0, 0.0, 5), unused
    # Deterministic given the seed.
    assert permutation_importance(prepared, users_of, items_of, repeats=5, seed=3) == importance


def test_the_chart_draws_every_group_with_its_interval():
    importance = {"user: a": GroupImportance(0.2, 0.01, 5), "item: b": GroupImportance(-0.001, 0.004, 5),
                  "item: c": GroupImportance(0.0, 0.0, 5)}
    png = importance_png(importance, title="tt-20260601-000000")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    assert GroupImportance(0.2, 0.01, 5).low == pytest.approx(0.19) and not GroupImportance(0.2, 0.01, 5).covers_zero()
    assert importance["item: b"].covers_zero()
