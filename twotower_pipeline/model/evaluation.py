"""Offline ranking metrics on the time-based holdout, for the model and its baselines alike.

Every ranker is judged the same way: for each held-out user, score the whole catalogue, drop
what the user liked before the holdout, and compare the top K with the held-out likes.
A ranker is a function that scores the catalogue for a slice of the held-out users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

RECALL_K = 50
NDCG_K = 10
PRECISION_K = 10
AUC_NEGATIVES = 100

# The design document's targets (Precision@10, Recall@50, NDCG@10, coverage).
SEED_TARGETS = {"precision_at_10": 0.15, "recall_at_50": 0.30, "ndcg_at_10": 0.20, "coverage_at_50": 0.70}

ScoreChunk = Callable[[slice], np.ndarray]
"""Scores [users in the slice, catalogue] for a slice of the held-out users."""


@dataclass(frozen=True)
class HoldoutUsers:
    """Per held-out user: catalogue rows liked before the holdout, and the held-out rows."""

    seen: list[np.ndarray]
    relevant: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.relevant)

    def subset(self, users: np.ndarray) -> HoldoutUsers:
        return HoldoutUsers([self.seen[u] for u in users], [self.relevant[u] for u in users])


def top_k_rows(scores: np.ndarray, seen: list[np.ndarray], k: int) -> np.ndarray:
    """Top-k catalogue rows per user from a [U, N] score matrix, excluding seen rows.

    Where fewer than k unseen rows exist, the remaining slots are -1.
    """
    scores = scores.astype(np.float32, copy=True)
    for u, rows in enumerate(seen):
        scores[u, rows] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    top[np.take_along_axis(part_scores, order, axis=1) == -np.inf] = -1
    return top


def top_k_by_vectors(user_vectors: np.ndarray, item_vectors: np.ndarray, seen: list[np.ndarray], k: int,
                     chunk: int = 256) -> np.ndarray:
    """``top_k_rows`` of the dot-product scores, a chunk of users at a time: the whole [U, N] score
    matrix of a large catalogue does not fit in memory (10,000 users x 500,000 videos is 20 GB)."""
    parts = [top_k_rows(user_vectors[start:start + chunk] @ item_vectors.T, seen[start:start + chunk], k)
             for start in range(0, len(user_vectors), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, min(k, len(item_vectors))), dtype=np.int64)


def _auc(scores: np.ndarray, relevant: np.ndarray, seen: np.ndarray, rng: np.random.Generator) -> float:
    """Probability that a held-out video outscores a random video the user never liked."""
    n = scores.shape[0]
    excluded = np.zeros(n, dtype=bool)
    excluded[seen] = True
    excluded[relevant] = True
    candidates = np.flatnonzero(~excluded)
    if len(candidates) == 0:
        return 0.5
    negatives = scores[rng.choice(candidates, size=min(AUC_NEGATIVES, len(candidates)), replace=False)]
    positives = scores[relevant]
    greater = (positives[:, None] > negatives[None, :]).mean()
    ties = (positives[:, None] == negatives[None, :]).mean()
    return float(greater + 0.5 * ties)


def _entropy_bits(labels: np.ndarray) -> float:
    if len(labels) == 0:
        return 0.0
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


@dataclass(frozen=True)
class PerUserMetrics:
    """Each held-out user's Recall@50, Precision@10, NDCG@10, AUC and genre entropy@10 (aligned with
    the holdout's users), the catalogue rows shown in any top 10 / top 50, and each user's held-out likes."""

    recall_at_50: np.ndarray
    precision_at_10: np.ndarray
    ndcg_at_10: np.ndarray
    auc: np.ndarray
    genre_entropy_at_10: np.ndarray
    shown_10: np.ndarray
    shown_50: np.ndarray
    held_out_likes: np.ndarray

    def summary(self) -> dict[str, float]:
        n = len(self.recall_at_50)
        if n == 0:
            return {name: 0.0 for name in ("recall_at_50", "precision_at_10", "ndcg_at_10", "auc",
                                           "coverage_at_10", "coverage_at_50", "genre_entropy_at_10",
                                           "holdout_users")}
        return {
            "recall_at_50": float(self.recall_at_50.mean()),
            "precision_at_10": float(self.precision_at_10.mean()),
            "ndcg_at_10": float(self.ndcg_at_10.mean()),
            "auc": float(self.auc.mean()),
            "coverage_at_10": float(self.shown_10.mean()),
            "coverage_at_50": float(self.shown_50.mean()),
            "genre_entropy_at_10": float(self.genre_entropy_at_10.mean()),
            "holdout_users": float(n),
        }


def per_user_metrics(
    score_chunk: ScoreChunk,
    holdout: HoldoutUsers,
    item_genres: np.ndarray,
    chunk: int = 256,
    seed: int = 0,
) -> PerUserMetrics:
    """Every user's metrics in one pass over the catalogue scores, a chunk of users at a time."""
    n_users, n_items = len(holdout), len(item_genres)
    rng = np.random.default_rng(seed)
    discounts = 1.0 / np.log2(np.arange(2, NDCG_K + 2))
    recalls, precisions, ndcgs, aucs, entropies = [], [], [], [], []
    shown_10 = np.zeros(n_items, dtype=bool)
    shown_50 = np.zeros(n_items, dtype=bool)
    for start in range(0, n_users, chunk):
        users = slice(start, min(start + chunk, n_users))
        scores = np.asarray(score_chunk(users), dtype=np.float32)
        seen, relevant = holdout.seen[users], holdout.relevant[users]
        top = top_k_rows(scores, seen, RECALL_K)
        for u in range(top.shape[0]):
            row = top[u][top[u] >= 0]
            hits = np.isin(row, relevant[u])
            wanted = len(relevant[u])
            recalls.append(hits[:RECALL_K].sum() / wanted)
            precisions.append(hits[:PRECISION_K].sum() / PRECISION_K)
            ndcgs.append(float((hits[:NDCG_K] * discounts[: min(NDCG_K, len(hits))]).sum())
                         / float(discounts[: min(wanted, NDCG_K)].sum()))
            aucs.append(_auc(scores[u], relevant[u], seen[u], rng))
            entropies.append(_entropy_bits(item_genres[row[:PRECISION_K]]))
            shown_10[row[:PRECISION_K]] = True
            shown_50[row] = True
    return PerUserMetrics(np.asarray(recalls, dtype=np.float64), np.asarray(precisions, dtype=np.float64),
                          np.asarray(ndcgs, dtype=np.float64), np.asarray(aucs, dtype=np.float64),
                          np.asarray(entropies, dtype=np.float64), shown_10, shown_50,
                          np.array([len(r) for r in holdout.relevant], dtype=np.int64))


def evaluate_ranker(
    score_chunk: ScoreChunk,
    holdout: HoldoutUsers,
    item_genres: np.ndarray,
    chunk: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Recall@50, Precision@10, NDCG@10, AUC, coverage@10/@50 and genre entropy@10 in one pass."""
    return per_user_metrics(score_chunk, holdout, item_genres, chunk, seed).summary()


def vector_scores(user_vectors: np.ndarray, item_vectors: np.ndarray) -> ScoreChunk:
    return lambda users: user_vectors[users] @ item_vectors.T


def popularity_scores(popularity: np.ndarray) -> ScoreChunk:
    scores = popularity.astype(np.float32)
    return lambda users: np.broadcast_to(scores, (users.stop - users.start, len(scores)))


def item_knn_scores(train_seen: list[np.ndarray], query_seen: list[np.ndarray], n_items: int) -> ScoreChunk:
    """ItemKNN: cosine similarity of items on the training like matrix, summed over a user's likes.

    score(u, j) = sum_{i in seen(u)} cos(i, j) with cos(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|),
    computed as (Q D^-1/2)(D^-1/2 X^T X D^-1/2) without forming the item x item matrix.
    """
    x = _binary_matrix(train_seen, n_items)
    counts = np.asarray(x.sum(axis=0)).ravel()
    inv_sqrt = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    xn = (x @ sp.diags(inv_sqrt)).tocsr()  # X D^-1/2
    q = (_binary_matrix(query_seen, n_items) @ sp.diags(inv_sqrt)).tocsr()  # Q D^-1/2
    xt = x.T.tocsr()

    def scores(users: slice) -> np.ndarray:
        overlap = q[users] @ xt  # Q D^-1/2 X^T: [chunk, training users]
        return np.asarray((overlap @ xn).todense(), dtype=np.float32)

    return scores


def _binary_matrix(rows_per_user: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows_per_user])])
    indices = np.concatenate(rows_per_user) if rows_per_user else np.zeros(0, dtype=np.int64)
    data = np.ones(len(indices), dtype=np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(len(rows_per_user), n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
