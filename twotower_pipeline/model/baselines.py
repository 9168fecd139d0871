"""Strong non-neural ranking baselines: popularity, ItemKNN, EASE and RP3beta.

Every baseline is a :data:`~twotower_pipeline.model.evaluation.ScoreChunk`, exactly like
``popularity_scores`` and ``item_knn_scores`` in :mod:`twotower_pipeline.model.evaluation`: a
function that, for a slice of the *query* users, returns their scores over the whole catalogue
([users in the slice, n_items], float32). Inputs are catalogue rows per user:

- ``train_seen[u]``: the rows user ``u`` of the training like matrix liked (the model is fitted on
  these; every user with likes, query users included);
- ``query_seen[q]``: the rows query user ``q`` liked before the holdout (what their scores are built
  from; for a user in the training matrix these are the same rows).

Excluding what a user has already liked is *not* done here: the evaluation (``top_k_rows``) does it,
the same way for every ranker. numpy and scipy only: no TensorFlow, no Dagster.

The two item-item models fitted here (EASE and RP3beta) are dense ``m x m`` matrices. On a large
catalogue they are restricted to the ``max_items`` most-liked items (ties: lower row first); see
:func:`modelled_items`. Every other item scores *below every modelled item* of the same user, in
popularity order (:func:`_place_unmodelled`), rather than ``-inf``: the ranked list is then always
complete (``top_k_rows`` turns ``-inf`` slots into ``-1``, i.e. no recommendation), which is what
``recommend_videos`` does too, and the tail order is the only sensible one for items the model does
not know, which by construction are the least liked ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from twotower_pipeline.model.evaluation import (
    RECALL_K,
    ScoreChunk,
    item_knn_scores,
    popularity_scores,
    top_k_rows,
)

__all__ = [
    "DEFAULT_MAX_ITEMS",
    "EASE_L2_GRID",
    "ItemItemScores",
    "ease_scores",
    "ease_weights",
    "fallback_to_popularity",
    "item_knn_scores",
    "like_counts",
    "modelled_items",
    "popularity_scores",
    "rp3beta_scores",
    "rp3beta_weights",
    "tune_ease_l2",
]

DEFAULT_MAX_ITEMS = 5_000
"""The item cap of the dense item-item models: a 5,000 x 5,000 float64 Gram matrix is 200 MB (EASE
peaks at ~0.7 GB: Gram, inverse, weights) and its inverse takes ~4 s on 2 idle cores; with
``l2="auto"`` EASE takes ~6 s in all there (17 s measured on 2 cores shared with other jobs: 10,000
users, 50,000 items). RP3beta's fit is a sparse product: well under a second."""

EASE_L2_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""Multiples of the mean like count of the tuned items tried by ``l2="auto"``: a geometric ladder
over 2.5 decades, since the Gram matrix, and with it the right penalty, scales with the counts."""

EASE_TUNE_ITEMS = 2_000
"""``l2="auto"`` tunes on at most this many of the modelled items (the most liked): one fit there
costs ~0.3 s, so the whole ladder stays around 2 s even when 5,000 items are modelled."""

EASE_TUNE_USERS = 1_000
"""Validation users of ``l2="auto"`` (seeded sample of the users with at least 5 likes)."""


# -- shared pieces ---------------------------------------------------------------------------------


def like_counts(rows_per_user: list[np.ndarray], n_items: int) -> np.ndarray:
    """Likes per catalogue row (each user counted once per item): the popularity of each item."""
    counts = np.zeros(n_items, dtype=np.float64)
    for rows in rows_per_user:
        if len(rows):
            counts[np.unique(np.asarray(rows, dtype=np.int64))] += 1.0
    return counts


def modelled_items(counts: np.ndarray, max_items: int | None) -> np.ndarray:
    """Catalogue rows of the items an item-item model covers: those with at least one like, at most
    ``max_items`` of them (the most liked; ties broken by the lower row), in ascending row order."""
    liked = np.flatnonzero(counts > 0)
    if max_items is not None and len(liked) > max_items:
        order = np.lexsort((liked, -counts[liked]))  # most liked first, then lower row
        liked = np.sort(liked[order[:max_items]])
    return liked


def _binary(rows_per_user: list[np.ndarray], columns: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Users x modelled items, 1 where the user liked the item; rows outside ``columns`` dropped."""
    position = np.full(n_items, -1, dtype=np.int64)
    position[columns] = np.arange(len(columns))
    indptr, indices = [0], []
    for rows in rows_per_user:
        mapped = position[np.asarray(rows, dtype=np.int64)] if len(rows) else np.zeros(0, dtype=np.int64)
        mapped = np.unique(mapped[mapped >= 0])
        indices.append(mapped)
        indptr.append(indptr[-1] + len(mapped))
    flat = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((np.ones(len(flat), dtype=np.float64), flat, np.array(indptr)),
                         shape=(len(rows_per_user), len(columns)))


def _place_unmodelled(modelled_scores: np.ndarray, columns: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Full-catalogue scores: the modelled items' own scores, every other item below the user's
    lowest modelled score, the more liked ones higher (offsets in (1, 2], one distinct step each)."""
    n_users = modelled_scores.shape[0]
    n_items = len(counts)
    full = np.empty((n_users, n_items), dtype=np.float64)
    others = np.setdiff1d(np.arange(n_items), columns, assume_unique=True)
    if len(columns):
        full[:, columns] = modelled_scores
        floor = modelled_scores.min(axis=1) if modelled_scores.shape[1] else np.zeros(n_users)
    else:
        floor = np.zeros(n_users)
    if len(others):
        order = np.lexsort((others, -counts[others]))  # most liked unmodelled first
        offset = np.empty(len(others))
        offset[order] = 1.0 + (np.arange(len(others)) + 1.0) / len(others)
        full[:, others] = floor[:, None] - offset[None, :]
    return full.astype(np.float32)


@dataclass
class ItemItemScores:
    """A fitted item-item model as a ScoreChunk: ``scores(slice)`` -> [users, n_items] float32.

    ``weights`` is the dense item-item matrix over ``columns`` (catalogue rows); ``info`` says how it
    was fitted (e.g. the EASE penalty chosen, the items modelled), for reports.
    """

    weights: np.ndarray
    columns: np.ndarray
    counts: np.ndarray
    query: sp.csr_matrix
    info: dict[str, float | str] = field(default_factory=dict)

    def __call__(self, users: slice) -> np.ndarray:
        modelled = np.asarray(self.query[users] @ self.weights, dtype=np.float64)
        return _place_unmodelled(modelled, self.columns, self.counts)


# -- EASE ------------------------------------------------------------------------------------------


def ease_weights(x: sp.spmatrix, l2: float) -> np.ndarray:
    """EASE's item-item matrix (Steck, WWW 2019), closed form:

    P = (X^T X + l2 I)^-1,  B = I - P diag(1 / diag(P)),  i.e. B_ij = -P_ij / P_jj, B_jj = 0.
    """
    if l2 <= 0:
        raise ValueError(f"EASE needs a positive l2 penalty, got {l2}")
    gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    factor = scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False)
    p = scipy.linalg.cho_solve(factor, np.eye(gram.shape[0]), overwrite_b=True, check_finite=False)
    b = p / (-np.diag(p))[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def tune_ease_l2(
    train_seen: list[np.ndarray],
    n_items: int,
    columns: np.ndarray,
    grid: tuple[float, ...] = EASE_L2_GRID,
    seed: int = 0,
) -> tuple[float, dict[str, float]]:
    """Pick EASE's penalty on a validation split of the training likes themselves.

    A seeded sample of at most ``EASE_TUNE_USERS`` users with at least 5 likes each lose a random
    20% of their likes (at least one); EASE is fitted on everything else over the ``EASE_TUNE_ITEMS``
    most-liked modelled items for each penalty ``multiple x mean like count of those items``, and the
    penalty with the best Recall@50 of the hidden likes wins (ties: the larger penalty). The split is
    random, not by time: it chooses a scale, it does not measure the model.
    Returns (penalty, {"l2=<value>": recall}).
    """
    counts = like_counts(train_seen, n_items)
    tuned = columns[np.argsort(-counts[columns], kind="stable")[:EASE_TUNE_ITEMS]]
    tuned = np.sort(tuned)
    rng = np.random.default_rng(seed)
    in_tuned = np.zeros(n_items, dtype=bool)
    in_tuned[tuned] = True
    rows = [np.unique(np.asarray(r, dtype=np.int64)) for r in train_seen]
    rows = [r[in_tuned[r]] for r in rows]
    eligible = np.flatnonzero([len(r) >= 5 for r in rows])
    mean_count = float(counts[tuned].mean()) if len(tuned) else 1.0
    fallback = max(mean_count, 1.0) * 10.0
    if len(eligible) < 10 or len(tuned) < 10:
        return fallback, {}
    chosen = np.sort(rng.choice(eligible, size=min(EASE_TUNE_USERS, len(eligible)), replace=False))
    fit_rows, kept, hidden = list(rows), [], []
    for u in chosen:
        shuffled = rng.permutation(rows[u])
        n_hidden = max(1, int(0.2 * len(shuffled)))
        hidden.append(shuffled[:n_hidden])
        kept.append(np.sort(shuffled[n_hidden:]))
        fit_rows[u] = kept[-1]
    x = _binary(fit_rows, tuned, n_items)
    q = _binary(kept, tuned, n_items)
    position = np.full(n_items, -1, dtype=np.int64)
    position[tuned] = np.arange(len(tuned))
    seen = [position[k] for k in kept]
    relevant = [position[h] for h in hidden]
    results: dict[str, float] = {}
    best_l2, best_recall = fallback, -1.0
    for multiple in grid:
        l2 = multiple * max(mean_count, 1.0)
        scores = np.asarray(q @ ease_weights(x, l2), dtype=np.float32)
        top = top_k_rows(scores, seen, RECALL_K)
        recall = float(np.mean([np.isin(top[i], relevant[i]).sum() / len(relevant[i]) for i in range(len(chosen))]))
        results[f"l2={l2:.4g}"] = recall
        if recall >= best_recall - 1e-12:
            best_l2, best_recall = l2, recall
    return best_l2, results


def ease_scores(
    train_seen: list[np.ndarray],
    query_seen: list[np.ndarray],
    n_items: int,
    l2: float | str = "auto",
    max_items: int | None = DEFAULT_MAX_ITEMS,
    seed: int = 0,
) -> ItemItemScores:
    """EASE on the training like matrix: score(u, j) = sum_{i in seen(u)} B_ij.

    ``l2``: a positive number, or ``"auto"`` (the default), chosen by :func:`tune_ease_l2` on a
    validation split of ``train_seen`` from a ladder of multiples of the mean like count (the Gram
    matrix's mean diagonal), since the right penalty grows with the number of users who like each
    item. (Steck reports 200-1,000 on data sets with 10^5-10^6 users; the issue reports 300 on
    MovieLens 100K, whose 943 users like an item ~40 times on average with ratings >= 4.)
    ``max_items``: the item cap (see the module's docstring); ``None`` models every liked item.
    The result's ``info`` holds the penalty used and the validation recalls.
    """
    counts = like_counts(train_seen, n_items)
    columns = modelled_items(counts, max_items)
    info: dict[str, float | str] = {"modelled_items": float(len(columns))}
    if isinstance(l2, str):
        if l2 != "auto":
            raise ValueError(f"l2 must be a positive number or 'auto', got {l2!r}")
        l2_value, tried = tune_ease_l2(train_seen, n_items, columns, seed=seed)
        info.update({f"validation_recall_at_50[{name}]": value for name, value in tried.items()})
        info["l2_source"] = "auto" if tried else "auto (too little data to tune: 10 x mean like count)"
    else:
        l2_value = float(l2)
        info["l2_source"] = "given"
    info["l2"] = l2_value
    weights = (ease_weights(_binary(train_seen, columns, n_items), l2_value).astype(np.float32)
               if len(columns) else np.zeros((0, 0), dtype=np.float32))
    return ItemItemScores(weights, columns, counts, _binary(query_seen, columns, n_items).astype(np.float32), info)


# -- RP3beta ---------------------------------------------------------------------------------------


def rp3beta_weights(x: sp.spmatrix, alpha: float, beta: float) -> np.ndarray:
    """RP3beta's item-item matrix (Paudel et al., TiiS 2016; as in Dacrema et al., RecSys 2019).

    A random walk item i -> user -> item j on the bipartite like graph, with the transition
    probabilities raised to ``alpha`` and the arrival item's popularity penalised by ``beta``:

    W_ij = sum_u (X_ui / deg(i))^alpha (X_uj / deg(u))^alpha / deg(j)^beta,   W_ii = 0,

    with deg(i) an item's likes and deg(u) a user's likes (X binary, so the powers only reach the
    degrees). alpha = 1, beta = 0 is the plain 3-step random walk P3; beta > 0 lifts the long tail.
    """
    x = sp.csr_matrix(x, dtype=np.float64)
    item_degree = np.asarray(x.sum(axis=0)).ravel()
    user_degree = np.asarray(x.sum(axis=1)).ravel()
    inv_user = np.where(user_degree > 0, np.maximum(user_degree, 1.0) ** -alpha, 0.0)
    inv_item = np.where(item_degree > 0, np.maximum(item_degree, 1.0) ** -alpha, 0.0)
    p_ui = sp.diags(inv_user) @ x  # user -> item, (1 / deg(u))^alpha
    p_iu = sp.diags(inv_item) @ x.T  # item -> user, (1 / deg(i))^alpha
    w = np.asarray((p_iu @ p_ui).todense(), dtype=np.float64)
    w *= np.where(item_degree > 0, np.maximum(item_degree, 1.0) ** -beta, 0.0)[None, :]
    np.fill_diagonal(w, 0.0)
    return w


def rp3beta_scores(
    train_seen: list[np.ndarray],
    query_seen: list[np.ndarray],
    n_items: int,
    alpha: float = 1.0,
    beta: float = 0.5,
    max_items: int | None = DEFAULT_MAX_ITEMS,
) -> ItemItemScores:
    """RP3beta on the training like matrix: score(u, j) = sum_{i in seen(u)} W_ij (see
    :func:`rp3beta_weights`). Defaults alpha = 1, beta = 0.5: the middle of the ranges Paudel et al.
    and Dacrema et al. found best (beta 0.3-0.7); no neighbourhood pruning (every W_ij kept).
    ``max_items``: the same item cap as EASE; the degrees are those inside the modelled items."""
    counts = like_counts(train_seen, n_items)
    columns = modelled_items(counts, max_items)
    weights = (rp3beta_weights(_binary(train_seen, columns, n_items), alpha, beta).astype(np.float32)
               if len(columns) else np.zeros((0, 0), dtype=np.float32))
    info: dict[str, float | str] = {"modelled_items": float(len(columns)), "alpha": alpha, "beta": beta}
    return ItemItemScores(weights, columns, counts, _binary(query_seen, columns, n_items).astype(np.float32), info)


def fallback_to_popularity(score: ScoreChunk, has_history: np.ndarray, popularity: np.ndarray) -> ScoreChunk:
    """``score`` for query users with history, ``popularity`` for those without (an item-item model
    gives every item the same score for a user who liked nothing)."""
    pop = np.asarray(popularity, dtype=np.float32)
    has_history = np.asarray(has_history, dtype=bool)

    def scores(users: slice) -> np.ndarray:
        out = np.asarray(score(users), dtype=np.float32).copy()
        cold = ~has_history[users]
        out[cold] = pop[None, :]
        return out

    return scores
