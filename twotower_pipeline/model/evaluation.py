"""Offline ranking metrics on the time-based holdout, for the model and its baselines alike.

Every ranker is judged the same way: for each held-out user, rank the whole catalogue,
drop what the user liked before the holdout, and compare the top K with the held-out likes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RECALL_K = 50
NDCG_K = 10
PRECISION_K = 10


@dataclass(frozen=True)
class HoldoutUsers:
    """Per held-out user: catalogue rows liked before the holdout, and the held-out rows."""

    seen: list[np.ndarray]
    relevant: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.relevant)


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


def rank_by_vectors(
    user_vectors: np.ndarray, item_vectors: np.ndarray, seen: list[np.ndarray], k: int, chunk: int = 512
) -> np.ndarray:
    """Top-k rows by dot product, in chunks of users so memory stays at chunk x catalogue."""
    out = np.zeros((len(user_vectors), min(k, len(item_vectors))), dtype=np.int64)
    for start in range(0, len(user_vectors), chunk):
        scores = user_vectors[start:start + chunk] @ item_vectors.T
        out[start:start + chunk] = top_k_rows(scores, seen[start:start + chunk], k)
    return out


def rank_by_popularity(popularity: np.ndarray, seen: list[np.ndarray], k: int) -> np.ndarray:
    scores = np.broadcast_to(popularity.astype(np.float32), (len(seen), len(popularity)))
    return top_k_rows(np.array(scores), seen, k)


def ranking_metrics(top: np.ndarray, holdout: HoldoutUsers, catalogue_size: int) -> dict[str, float]:
    """recall@50, precision@10, ndcg@10 (averaged over users) and catalogue coverage@10."""
    if len(holdout) == 0:
        return {"recall_at_50": 0.0, "precision_at_10": 0.0, "ndcg_at_10": 0.0, "coverage_at_10": 0.0,
                "holdout_users": 0.0}
    recalls, precisions, ndcgs = [], [], []
    discounts = 1.0 / np.log2(np.arange(2, NDCG_K + 2))
    for u, relevant in enumerate(holdout.relevant):
        wanted = set(relevant.tolist())
        hits = np.fromiter((row in wanted for row in top[u]), dtype=bool, count=top.shape[1])
        recalls.append(hits[:RECALL_K].sum() / len(wanted))
        precisions.append(hits[:PRECISION_K].sum() / PRECISION_K)
        dcg = float((hits[:NDCG_K] * discounts[: min(NDCG_K, len(hits))]).sum())
        ideal = float(discounts[: min(len(wanted), NDCG_K)].sum())
        ndcgs.append(dcg / ideal)
    shown = top[:, :PRECISION_K]
    coverage = len(np.unique(shown[shown >= 0])) / max(catalogue_size, 1)
    return {
        "recall_at_50": float(np.mean(recalls)),
        "precision_at_10": float(np.mean(precisions)),
        "ndcg_at_10": float(np.mean(ndcgs)),
        "coverage_at_10": float(coverage),
        "holdout_users": float(len(holdout)),
    }
