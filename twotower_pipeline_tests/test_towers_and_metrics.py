"""The towers' shapes and masking, the holdout split, and the metrics against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from twotower_pipeline.model.config import TowerConfig
from twotower_pipeline.model.dataset import HoldoutConfig, UserSequences, next_like_examples, temporal_holdout
from twotower_pipeline.model.evaluation import (
    HoldoutUsers,
    evaluate_ranker,
    item_knn_scores,
    top_k_by_vectors,
    top_k_rows,
    vector_scores,
)
from twotower_pipeline.model.features import (
    HISTORY_LENGTH,
    OOV,
    FeatureSpec,
    Vocabulary,
)
from twotower_pipeline.model.towers import build_item_tower, build_user_tower
from twotower_pipeline_tests.conftest import tiny_feature_spec


def _history(batch: int, rng: np.random.Generator, spec: FeatureSpec, filled: int) -> dict[str, np.ndarray]:
    inputs = {
        "hist_video_idx": rng.integers(2, spec.videos.size, (batch, HISTORY_LENGTH)),
        "hist_genre_idx": rng.integers(2, spec.genres.size, (batch, HISTORY_LENGTH)),
        "hist_maker_idx": rng.integers(2, spec.makers.size, (batch, HISTORY_LENGTH)),
        "hist_price": rng.normal(size=(batch, HISTORY_LENGTH)).astype(np.float32),
        "hist_age_days": rng.uniform(0, 100, (batch, HISTORY_LENGTH)).astype(np.float32),
    }
    inputs["hist_video_idx"][:, : HISTORY_LENGTH - filled] = 0
    inputs["user_age_range_idx"] = np.full(batch, OOV)
    inputs["user_region_idx"] = np.full(batch, OOV)
    return inputs


def test_user_tower_gives_unit_64d_vectors_and_padding_does_not_leak():
    spec = tiny_feature_spec()
    tower = build_user_tower(spec, TowerConfig(dropout=0.0))
    rng = np.random.default_rng(0)
    inputs = _history(4, rng, spec, filled=7)
    out = np.asarray(tower(inputs))
    assert out.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)

    # Whatever sits in padded positions (video index 0) must not change the user vector.
    scrambled = {k: v.copy() for k, v in inputs.items()}
    pad = scrambled["hist_video_idx"] == 0
    scrambled["hist_genre_idx"][pad] = 2
    scrambled["hist_maker_idx"][pad] = 3
    scrambled["hist_price"][pad] = 99.0
    scrambled["hist_age_days"][pad] = 5000.0
    np.testing.assert_allclose(np.asarray(tower(scrambled)), out, atol=1e-6)

    # ...while a real like does change it.
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["hist_video_idx"][:, -1] = (changed["hist_video_idx"][:, -1] + 1 - 2) % (spec.videos.size - 2) + 2
    assert np.abs(np.asarray(tower(changed)) - out).max() > 1e-4


def test_user_tower_handles_an_empty_history():
    spec = tiny_feature_spec()
    tower = build_user_tower(spec)
    out = np.asarray(tower(_history(2, np.random.default_rng(1), spec, filled=0)))
    assert np.isfinite(out).all()


def test_item_tower_gives_unit_64d_vectors_and_unknown_ids_use_the_oov_row():
    spec = tiny_feature_spec()
    tower = build_item_tower(spec, TowerConfig(dropout=0.0))
    n = 3
    inputs = {
        "video_idx": np.array([2, OOV, 5]), "genre_idx": np.array([2, OOV, 3]), "maker_idx": np.array([2, 2, OOV]),
        "performer_idx": np.zeros((n, 8), dtype=np.int64), "tag_idx": np.zeros((n, 16), dtype=np.int64),
        "text_idx": np.zeros((n, 32), dtype=np.int64), "text_weight": np.zeros((n, 32), dtype=np.float32),
        "numeric": np.zeros((n, 4), dtype=np.float32),
    }
    out = np.asarray(tower(inputs))
    assert out.shape == (n, 64)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_vocabulary_maps_unknown_and_missing_values_to_oov():
    vocab = Vocabulary.by_frequency(pd.Series(["b", "a", "b", None, "c", "c", "c"]), limit=2)
    assert vocab.tokens == ["c", "b"]
    assert list(vocab.lookup(["c", "b", "a", None, 3])) == [2, 3, OOV, OOV, OOV]


def test_feature_spec_round_trips_through_json():
    spec = tiny_feature_spec()
    again = FeatureSpec.from_json(spec.to_json())
    assert again.videos.tokens == spec.videos.tokens and again.price == spec.price
    assert again.text_vectorizer().transform(["word word other"]).nnz == 2


def test_holdout_takes_each_users_latest_likes_and_nothing_later_is_trained_on():
    t = pd.Timestamp("2026-06-01", tz="UTC")
    likes = pd.DataFrame({
        "user_id": ["u1"] * 10 + ["u2"] * 3,
        "video_id": [f"v{i}" for i in range(10)] + ["v0", "v1", "v2"],
        "created_at": [t + pd.Timedelta(days=i) for i in range(10)] + [t + pd.Timedelta(days=i) for i in range(3)],
        "row": list(range(10)) + [0, 1, 2],
    })
    split = temporal_holdout(likes, HoldoutConfig(holdout_fraction=0.2, min_likes_for_holdout=5))
    assert sorted(split.test.video_id) == ["v8", "v9"]  # u1's two latest; u2 has too few to hold out
    assert split.train[split.train.user_id == "u1"].created_at.max() < split.test.created_at.min()
    assert len(split.train) == 11


def test_next_like_examples_use_only_earlier_likes_as_history():
    sequences = UserSequences(
        user_ids=np.array(["u"]), rows=[np.array([5, 6, 7])], times=[np.array([0.0, 86_400.0, 3 * 86_400.0])]
    )
    examples = next_like_examples(sequences, pad_row=99, length=4)
    assert list(examples.positive_rows) == [6, 7]
    assert examples.history_rows.tolist() == [[99, 99, 99, 5], [99, 99, 5, 6]]
    # Ages are measured from the history's newest like (day 1), not from the like being predicted
    # (day 3): serving measures them the same way, however long after that like it runs.
    np.testing.assert_allclose(examples.history_age_days[1], [0, 0, 1, 0])
    np.testing.assert_allclose(examples.positive_times, [86_400.0, 3 * 86_400.0])
    assert list(examples.is_last) == [False, True]
    assert list(examples.users) == [0, 0]


def test_top_k_in_user_chunks_equals_the_whole_score_matrix():
    # Validation ranks the catalogue a chunk of users at a time; the answer must not depend on it.
    rng = np.random.default_rng(3)
    users, items = rng.normal(size=(23, 8)), rng.normal(size=(40, 8))
    seen = [rng.choice(40, size=rng.integers(0, 10), replace=False) for _ in range(23)]
    whole = top_k_rows(users @ items.T, seen, k=12)
    chunked = top_k_by_vectors(users, items, seen, k=12, chunk=5)
    np.testing.assert_array_equal(chunked, whole)
    assert not any(np.isin(chunked[u], seen[u]).any() for u in range(23))


def test_metrics_match_hand_computed_values():
    # Two users, catalogue of 6 in three genres. User 0 holds out {1, 4}; user 1 holds out {5}.
    scores = np.array([[0.9, 0.8, 0.1, 0.7, 0.6, 0.0],
                       [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    seen = [np.array([0]), np.array([], dtype=int)]
    top = top_k_rows(scores, seen, k=6)
    assert top[0].tolist() == [1, 3, 4, 2, 5, -1]  # the seen video is never recommended
    holdout = HoldoutUsers(seen=seen, relevant=[np.array([1, 4]), np.array([5])])
    genres = np.array([0, 0, 1, 1, 2, 2])
    metrics = evaluate_ranker(lambda users: scores[users], holdout, genres)

    assert metrics["recall_at_50"] == pytest.approx(1.0)
    # P@10 with a 6-video catalogue: hits (2 and 1) over 10.
    assert metrics["precision_at_10"] == pytest.approx((2 / 10 + 1 / 10) / 2)
    # User 0: hits at ranks 1 and 3 -> DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3). User 1: 1.
    assert metrics["ndcg_at_10"] == pytest.approx((1.5 / (1 + 1 / np.log2(3)) + 1.0) / 2)
    # User 0: positives 0.8 and 0.6 against negatives {0.1, 0.7, 0.0} -> 5 of 6 pairs; user 1: all.
    assert metrics["auc"] == pytest.approx((5 / 6 + 1.0) / 2)
    # Genres shown: user 0 [0, 1, 2, 1, 2] -> shares .2/.4/.4; user 1 all three equally.
    entropy_0 = -(0.2 * np.log2(0.2) + 2 * 0.4 * np.log2(0.4))
    assert metrics["genre_entropy_at_10"] == pytest.approx((entropy_0 + np.log2(3)) / 2)
    assert metrics["coverage_at_10"] == pytest.approx(1.0)


def test_coverage_counts_distinct_videos_shown_across_users():
    scores = np.tile(np.arange(100, dtype=float), (3, 1))  # everyone gets the same ranking
    holdout = HoldoutUsers(seen=[np.array([], dtype=int)] * 3, relevant=[np.array([99])] * 3)
    metrics = evaluate_ranker(lambda users: scores[users], holdout, np.zeros(100, dtype=int))
    assert metrics["coverage_at_10"] == pytest.approx(0.10)
    assert metrics["coverage_at_50"] == pytest.approx(0.50)
    assert metrics["genre_entropy_at_10"] == 0.0


def test_item_knn_is_cosine_similarity_summed_over_a_users_likes():
    # Users A {0, 1}, B {1, 2}, C {0}: cos(0,1) = 1/sqrt(2*2) = .5, cos(1,2) = 1/sqrt(2*1), cos(0,2) = 0.
    scores = item_knn_scores([np.array([0, 1]), np.array([1, 2]), np.array([0])],
                             [np.array([0]), np.array([1])], n_items=3)
    np.testing.assert_allclose(scores(slice(0, 2)), [[1.0, 0.5, 0.0], [0.5, 1.0, 1 / np.sqrt(2)]], atol=1e-6)


def test_vector_scores_are_dot_products():
    users, items = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[3.0, 4.0], [1.0, 1.0]])
    np.testing.assert_allclose(vector_scores(users, items)(slice(0, 2)), [[3.0, 1.0], [8.0, 2.0]])
