"""The ranking baselines (EASE, RP3beta, ItemKNN, popularity) on hand-checkable matrices, the item
cap, and a synthetic data set with item-item structure where they must beat popularity."""

from __future__ import annotations

import numpy as np
import pytest

from twotower_pipeline.model.baselines import (
    EASE_L2_GRID,
    ease_scores,
    ease_weights,
    fallback_to_popularity,
    item_knn_scores,
    like_counts,
    modelled_items,
    popularity_scores,
    rp3beta_scores,
    rp3beta_weights,
)
from twotower_pipeline.model.baselines import _binary as binary_matrix
from twotower_pipeline.model.evaluation import HoldoutUsers, evaluate_ranker

# 5 users x 4 items
LIKES = [np.array(r) for r in ([0, 1], [0, 1, 2], [1, 2], [2, 3], [0, 3])]


def dense(rows: list[np.ndarray], n_items: int) -> np.ndarray:
    x = np.zeros((len(rows), n_items))
    for u, r in enumerate(rows):
        x[u, r] = 1.0
    return x


def test_ease_two_items_closed_form():
    # Gram [[a, c], [c, b]]: B_12 = c / (a + l2) and B_21 = c / (b + l2), by inverting the 2 x 2 by hand.
    rows = [np.array([0, 1]), np.array([0]), np.array([0]), np.array([1, 0]), np.array([1])]
    a, b, c, l2 = 4.0, 3.0, 2.0, 5.0
    x = binary_matrix(rows, np.arange(2), 2)
    assert np.allclose((x.T @ x).toarray(), [[a, c], [c, b]])
    weights = ease_weights(x, l2)
    assert np.allclose(weights, [[0.0, c / (a + l2)], [c / (b + l2), 0.0]])


def test_ease_matches_numpys_direct_formula():
    x = dense(LIKES, 4)
    l2 = 2.5
    p = np.linalg.inv(x.T @ x + l2 * np.eye(4))
    expected = np.eye(4) - p @ np.diag(1.0 / np.diag(p))
    weights = ease_weights(binary_matrix(LIKES, np.arange(4), 4), l2)
    assert np.allclose(weights, expected, atol=1e-12)
    assert np.allclose(np.diag(weights), 0.0)

    # score(u, j) = sum of B over the user's likes; a user's own likes keep their score (not excluded here)
    query = [np.array([0]), np.array([1, 3]), np.array([], dtype=np.int64)]
    scores = ease_scores(LIKES, query, 4, l2=l2, max_items=None)(slice(0, 3))
    assert scores.shape == (3, 4) and scores.dtype == np.float32
    assert np.allclose(scores, dense(query, 4) @ expected, atol=1e-6)
    assert np.isfinite(scores).all()
    assert scores[1, 1] == pytest.approx(expected[3, 1], abs=1e-6)  # a liked item is scored like any other


def test_ease_auto_penalty_is_from_the_ladder_and_reported():
    rng = np.random.default_rng(0)
    rows = [np.sort(rng.choice(60, size=rng.integers(6, 15), replace=False)) for _ in range(200)]
    scorer = ease_scores(rows, rows[:5], 60)
    counts = like_counts(rows, 60)
    ladder = [m * counts[counts > 0].mean() for m in EASE_L2_GRID]
    assert scorer.info["l2_source"] == "auto"
    assert min(abs(scorer.info["l2"] - value) for value in ladder) < 1e-9
    assert len([k for k in scorer.info if k.startswith("validation_recall_at_50")]) == len(EASE_L2_GRID)
    with pytest.raises(ValueError):
        ease_scores(rows, rows, 60, l2=0.0)


def test_rp3beta_transition_maths():
    # users: {0, 1}, {0, 2}, {1}; item degrees 2, 2, 1; user degrees 2, 2, 1
    rows = [np.array([0, 1]), np.array([0, 2]), np.array([1])]
    x = binary_matrix(rows, np.arange(3), 3)
    # P3 (alpha 1, beta 0): W_ij = sum_u 1/deg(i) * 1/deg(u), the 3-step walk i -> u -> j
    p3 = rp3beta_weights(x, alpha=1.0, beta=0.0)
    assert np.allclose(p3, [[0, 0.25, 0.25], [0.25, 0, 0], [0.5, 0, 0]])
    # the walk's rows sum to 1 before the diagonal is removed: W_00 = 2 x 1/4, W_11 = 1/4 + 1/2, W_22 = 1/2
    assert np.allclose(p3.sum(axis=1) + [0.5, 0.75, 0.5], 1.0)
    # beta divides the arrival item's column by its degree^beta
    rp3 = rp3beta_weights(x, alpha=1.0, beta=1.0)
    assert np.allclose(rp3, [[0, 0.125, 0.25], [0.125, 0, 0], [0.25, 0, 0]])
    # alpha raises both transition probabilities
    alpha = 0.5
    xd = dense(rows, 3)
    expected = (np.diag(xd.sum(0) ** -alpha) @ xd.T) @ (np.diag(xd.sum(1) ** -alpha) @ xd) / xd.sum(0)[None, :] ** 0.3
    np.fill_diagonal(expected, 0.0)
    assert np.allclose(rp3beta_weights(x, alpha=alpha, beta=0.3), expected)

    scores = rp3beta_scores(rows, [np.array([0]), np.array([1, 2])], 3, alpha=1.0, beta=1.0, max_items=None)
    assert np.allclose(scores(slice(0, 2)), [[0, 0.125, 0.25], [0.375, 0, 0]])


def test_item_cap_keeps_the_modelled_items_scores_and_ranks_the_others_below():
    rng = np.random.default_rng(3)
    n_items = 12
    rows = [np.sort(rng.choice(n_items, size=rng.integers(2, 7), replace=False)) for _ in range(80)]
    counts = like_counts(rows, n_items)
    kept = modelled_items(counts, 5)
    assert len(kept) == 5 and np.all(np.diff(kept) > 0)
    assert counts[kept].min() >= np.delete(counts, kept).max()

    query = [rows[0], rows[1], np.array([int(np.setdiff1d(np.arange(n_items), kept)[0])])]
    for name, make, reference in (
        ("ease", lambda cap: ease_scores(rows, query, n_items, l2=7.0, max_items=cap),
         lambda x: ease_weights(x, 7.0)),
        ("rp3beta", lambda cap: rp3beta_scores(rows, query, n_items, max_items=cap),
         lambda x: rp3beta_weights(x, 1.0, 0.5)),
    ):
        scores = make(5)(slice(0, 3))
        # the modelled items score exactly as a model fitted on those items only
        sub_rows = [r[np.isin(r, kept)] for r in rows]
        sub_query = [r[np.isin(r, kept)] for r in query]
        expected = dense(sub_query, n_items)[:, kept] @ reference(binary_matrix(sub_rows, kept, n_items))
        assert np.allclose(scores[:, kept], expected, atol=1e-5), name
        # every other item below every modelled item, the more liked first
        others = np.setdiff1d(np.arange(n_items), kept)
        assert (scores[:, others].max(axis=1) < scores[:, kept].min(axis=1)).all(), name
        by_popularity = others[np.lexsort((others, -counts[others]))]
        assert (np.diff(scores[:, by_popularity], axis=1) < 0).all(), name
        # uncapped, every liked item is modelled
        assert make(None).columns.tolist() == np.flatnonzero(counts > 0).tolist()
    # a user who liked only unmodelled items gets a flat modelled part (all zero), still a full ranking
    assert np.isfinite(ease_scores(rows, query, n_items, l2=7.0, max_items=5)(slice(2, 3))).all()


def test_items_nobody_liked_are_not_modelled_and_rank_last():
    rows = [np.array([0, 1]), np.array([1, 2]), np.array([0, 2])]
    scores = ease_scores(rows, rows, 5, l2=1.0, max_items=None)
    assert scores.columns.tolist() == [0, 1, 2]
    full = scores(slice(0, 3))
    assert (full[:, 3:].max(axis=1) < full[:, :3].min(axis=1)).all()


def test_fallback_to_popularity_for_users_without_history():
    rows = [np.array([0, 1]), np.array([1, 2]), np.array([0, 2])]
    query = [np.array([0]), np.array([], dtype=np.int64)]
    popularity = np.array([5.0, 1.0, 3.0])
    scorer = fallback_to_popularity(rp3beta_scores(rows, query, 3, max_items=None), np.array([True, False]),
                                    popularity)
    out = scorer(slice(0, 2))
    assert np.allclose(out[1], popularity)
    assert np.allclose(out[0], rp3beta_scores(rows, query, 3, max_items=None)(slice(0, 1))[0])


def _clustered_likes(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Users like items of one of 10 clusters of 60 items, plus a few globally popular items: an
    item-item structure popularity cannot see. A random 20% of each user's likes is held out."""
    rng = np.random.default_rng(seed)
    n_clusters, per_cluster, n_popular = 10, 60, 20
    n_items = n_clusters * per_cluster + n_popular
    popular = np.arange(n_clusters * per_cluster, n_items)
    within = rng.dirichlet(np.full(per_cluster, 0.7), size=n_clusters)
    train, test = [], []
    for _ in range(400):
        cluster = rng.integers(n_clusters)
        mine = rng.choice(per_cluster, size=rng.integers(6, 16), replace=False, p=within[cluster])
        items = cluster * per_cluster + mine
        weight = np.linspace(2.0, 1.0, n_popular)
        extra = rng.choice(popular, size=rng.integers(1, 4), replace=False, p=weight / weight.sum())
        likes = rng.permutation(np.concatenate([items, extra]))
        cut = len(likes) - max(1, len(likes) // 5)
        train.append(np.sort(likes[:cut]))
        test.append(np.sort(likes[cut:]))
    return train, test, n_items


def test_item_item_baselines_beat_popularity_where_items_cluster():
    train, test, n_items = _clustered_likes()
    holdout = HoldoutUsers(seen=train, relevant=test)
    genres = np.zeros(n_items, dtype=np.int64)
    counts = like_counts(train, n_items)
    recall = {
        name: evaluate_ranker(score, holdout, genres)["recall_at_50"]
        for name, score in {
            "popularity": popularity_scores(counts),
            "item_knn": item_knn_scores(train, train, n_items),
            "ease": ease_scores(train, train, n_items),
            "rp3beta": rp3beta_scores(train, train, n_items),
            "ease_capped": ease_scores(train, train, n_items, max_items=150),
        }.items()
    }
    for name in ("item_knn", "ease", "rp3beta", "ease_capped"):
        assert recall[name] > 1.5 * recall["popularity"], recall
    assert recall["ease"] > 0.5, recall
