"""Training on real TensorFlow: determinism, no leakage across the split, and awkward data."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from twotower_pipeline import db
from twotower_pipeline.app_data import read_catalogue, read_likes
from twotower_pipeline.demo_data import DemoSize, generate_demo_data, load_demo_data
from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.importance import FEATURE_GROUPS
from twotower_pipeline.model.losses import likes_matrix
from twotower_pipeline.model.negatives import NegativeSampler
from twotower_pipeline.model.preparation import TrainingDataError, held_out_after, prepare_training
from twotower_pipeline.model.training import (
    ExampleBatches,
    TrainedTwoTower,
    batch_stream,
    embed_items,
    train_two_tower,
)
from twotower_pipeline.reporting import importance_png
from twotower_pipeline.validation import clean_catalogue, clean_likes

QUICK = TrainingConfig(epochs=2, batch_size=128, early_stopping_patience=1)
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def demo_frames(postgres_server) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small demo catalogue and its likes, read back from a real database as the pipeline does."""
    import uuid

    import psycopg

    name = f"tr_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"create database {name} template twotower_template")
    url = postgres_server.url().rpartition("/")[0] + "/" + name
    with db.connect(url) as conn:
        load_demo_data(conn, generate_demo_data(DemoSize(videos=800, users=80, likes=4_000, seed=5), NOW))
    engine = db.create_engine(url)
    catalogue = clean_catalogue(read_catalogue(engine))
    likes = clean_likes(read_likes(engine, NOW - timedelta(days=365)), set(catalogue["id"]), NOW)
    engine.dispose()
    return catalogue, likes


def _sound(trained) -> None:
    assert all(np.isfinite(v) for v in trained.metrics.values()), trained.metrics
    vectors = embed_items(trained.item_tower, trained.prepared.items)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_training_is_deterministic_given_a_seed(demo_frames):
    catalogue, likes = demo_frames
    first = train_two_tower(catalogue, likes, QUICK, importance=False)
    second = train_two_tower(catalogue, likes, QUICK, importance=False)
    assert first.metrics == second.metrics
    for a, b in zip(first.user_tower.get_weights(), second.user_tower.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nothing_from_the_holdout_reaches_vocabularies_or_popularity(demo_frames):
    catalogue, likes = demo_frames
    prepared = prepare_training(catalogue, likes, QUICK)
    train_videos = set(prepared.split.train["video_id"])
    test_only = set(prepared.split.test["video_id"]) - train_videos
    assert test_only, "the demo data should have videos first liked in the holdout"
    assert not test_only & set(prepared.spec.videos.tokens)
    rows = catalogue.index[catalogue["id"].isin(test_only)].to_numpy()
    assert (prepared.popular.scores[rows] == 0).all()  # the cold-start order
    assert (prepared.popularity_index.counts(rows, np.full(len(rows), prepared.as_of.value / 1e9)) == 0).all()
    # Every held-out like is later than every training like of the same user.
    last_train = prepared.split.train.groupby("user_id")["created_at"].max()
    first_test = prepared.split.test.groupby("user_id")["created_at"].min()
    assert (first_test > last_train.reindex(first_test.index)).all()


def test_each_batch_says_which_positives_the_examples_users_liked(demo_frames):
    catalogue, likes = demo_frames
    prepared = prepare_training(catalogue, likes, QUICK)
    examples = prepared.train_examples
    liked = likes_matrix(prepared.sequences.rows, len(prepared.catalogue))
    log_q = np.zeros(len(prepared.catalogue))
    batches = ExampleBatches(prepared, examples, 256, log_q, seed=1, liked=liked)
    batch = batches[0]
    users = examples.users[batches.order[:256]]
    mask = batch["liked_by_user"].astype(bool)
    expected = np.array([[row in set(prepared.sequences.rows[u]) for row in batch["positive_row"]] for u in users])
    np.testing.assert_array_equal(mask, expected)
    assert mask.diagonal().all()  # each example's own positive is one of its user's likes
    assert (mask.sum(axis=1) > 1).any(), "the demo's heavy users should meet their other likes in a batch"
    # With two replicas, each half of the batch gets the mask of its own half.
    halves = ExampleBatches(prepared, examples, 256, log_q, seed=1, liked=liked, replicas=2)[0]
    assert halves["liked_by_user"].shape == (256, 128)
    np.testing.assert_array_equal(halves["liked_by_user"][:128].astype(bool), mask[:128, :128])
    np.testing.assert_array_equal(halves["liked_by_user"][128:].astype(bool), mask[128:, 128:])
    # The margin loss's negatives come per example: [B, K, ...].
    sampler = NegativeSampler(prepared.sequences.rows, prepared.popular.scores, seed=0)
    margin = ExampleBatches(prepared, examples, 64, log_q, seed=1, sampler=sampler, negatives_per_example=4)[0]
    assert margin["neg_video_idx"].shape == (64, 4) and margin["neg_text_idx"].shape[:2] == (64, 4)
    assert margin["neg_numeric"].shape == (64, 4, 4)


@pytest.mark.parametrize("replicas", [1, 3])
def test_the_input_pipeline_yields_the_batches_example_batches_builds(demo_frames, replicas):
    """The tf.data pipeline gathers the batches in TensorFlow: the same arrays, dtypes and order as
    ExampleBatches[i], and a fresh order in the next epoch."""
    catalogue, likes = demo_frames
    prepared = prepare_training(catalogue, likes, QUICK)
    examples = prepared.train_examples
    liked = likes_matrix(prepared.sequences.rows, len(prepared.catalogue))
    log_q = np.log(np.arange(1, len(prepared.catalogue) + 1) / len(prepared.catalogue))
    expected = ExampleBatches(prepared, examples, 100, log_q, seed=3, liked=liked, replicas=replicas)
    stream = batch_stream(ExampleBatches(prepared, examples, 100, log_q, seed=3, liked=liked, replicas=replicas))
    for _epoch in range(2):
        got = list(stream.as_numpy_iterator())
        assert len(got) == len(expected) > 1
        for index, batch in enumerate(got):
            want = expected[index]
            assert sorted(batch) == sorted(want)
            for name, values in want.items():
                assert batch[name].dtype == values.dtype, name
                np.testing.assert_array_equal(batch[name], values, err_msg=name)
        expected.on_epoch_end()
    assert not np.array_equal(got[0]["positive_row"], list(stream.as_numpy_iterator())[0]["positive_row"])


def test_the_margin_loss_trains_too(demo_frames):
    catalogue, likes = demo_frames
    trained = train_two_tower(catalogue, likes, TrainingConfig(loss="margin", epochs=2, batch_size=128),
                              importance=False)
    _sound(trained)
    assert len(trained.history["loss"]) == 2


def test_feature_importance_covers_every_group_with_its_spread_and_survives_a_save(demo_frames, tmp_path):
    catalogue, likes = demo_frames
    config = replace(QUICK, importance_repeats=3)
    trained = train_two_tower(catalogue, likes, config)
    assert set(trained.importance) == set(FEATURE_GROUPS)
    assert {"user: liked videos", "user: whole history", "item: genre", "user: demographics"} <= set(
        trained.feature_importance)
    for group, value in trained.importance.items():
        assert value.repeats == 3 and np.isfinite(value.mean) and value.std >= 0, (group, value)
        assert trained.feature_importance[group] == value.mean  # what the feature_importance table gets
        assert trained.feature_importance_std[group] == value.std
    assert trained.stats["importance_seconds"] > 0
    trained.save(tmp_path / "model")
    assert TrainedTwoTower.load(tmp_path / "model").importance == trained.importance
    assert importance_png(trained.importance).startswith(b"\x89PNG")


def _no_text(catalogue, likes):
    return catalogue.assign(title="", description=""), likes


def _one_genre(catalogue, likes):
    return catalogue.assign(genre="Drama"), likes


def _extreme_prices(catalogue, likes):
    prices = catalogue["price"].to_numpy(copy=True)
    prices[::3], prices[1::3] = 1e12, 0.0
    prices[2::7] = np.nan
    return catalogue.assign(price=prices, duration_seconds=catalogue["duration_seconds"] * 1_000), likes


def _liked_by_everyone(catalogue, likes):
    star = catalogue["id"].iloc[0]
    extra = likes.groupby("user_id", as_index=False)["created_at"].min()
    extra = extra.assign(video_id=star, created_at=extra["created_at"] - pd.Timedelta(minutes=1))
    return catalogue, pd.concat([likes[likes["video_id"] != star], extra], ignore_index=True)


def _some_users_with_one_like(catalogue, likes):
    firsts = likes.sort_values("created_at").groupby("user_id").head(1)
    singles = firsts.head(20).assign(user_id=[f"00000000-0000-4000-8000-{i:012d}" for i in range(20)])
    return catalogue, pd.concat([likes, singles], ignore_index=True)


@pytest.mark.parametrize("awkward", [_no_text, _one_genre, _extreme_prices, _liked_by_everyone,
                                     _some_users_with_one_like])
def test_awkward_but_valid_data_still_trains_a_sound_model(demo_frames, awkward):
    catalogue, likes = awkward(*demo_frames)
    trained = train_two_tower(catalogue, likes, QUICK, importance=False)
    _sound(trained)


def test_only_single_like_users_stop_training_with_a_clear_reason(demo_frames):
    catalogue, likes = demo_frames
    singles = likes.sort_values("created_at").groupby("user_id").head(1)
    with pytest.raises(TrainingDataError, match="training examples .* at least 100 are needed"):
        train_two_tower(catalogue, singles, QUICK, importance=False)


def test_the_fair_comparison_keeps_only_held_out_likes_after_the_cutoff(demo_frames):
    catalogue, likes = demo_frames
    prepared = prepare_training(catalogue, likes, QUICK)
    cutoff = prepared.split.test["created_at"].quantile(0.5)
    later = held_out_after(prepared, cutoff)
    after = prepared.split.test[prepared.split.test["created_at"] > cutoff]
    assert sum(len(rows) for rows in later.relevant) == len(after)
    assert 0 < len(later.user_ids) < len(prepared.holdout_user_ids)
    position = {user: i for i, user in enumerate(prepared.holdout_user_ids)}
    for user, rows in zip(later.user_ids, later.relevant):
        assert set(rows) <= set(prepared.holdout_relevant[position[user]])
