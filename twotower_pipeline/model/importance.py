"""Permutation importance of the towers' feature groups, on the served path, with its spread.

A group's importance is the drop in served Recall@50 (the held-out users' vectors from their
histories as publishing computes them, ranked against every catalogue video's vector, their own
likes excluded) when that group's values are shuffled, averaged over ``repeats`` shuffles; the
standard deviation of the drops says how far one shuffle's number is to be trusted.

Shuffling never touches the padding mask. The user tower derives the mask of every history input
from ``hist_video_idx`` (a position is a like where it is > 0), so shuffling a history input across
users would also scramble the masks of the genre and maker distributions, maker taste and behaviour.
Instead, a history input's values are permuted among the valid (non-padding) positions of all the
users: each user keeps their history length and mask, only the values move. "user: whole history"
shuffles whole histories (all history inputs of a user together) across users; demographics and the
item groups shuffle whole rows across users or videos, as an item's own id bags carry their own masks.

Plain numpy (no TensorFlow): the towers come in as functions from inputs to vectors, so a test can
plant hand-made towers, and the chart can be drawn where TensorFlow is not loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from twotower_pipeline.model.evaluation import RECALL_K
from twotower_pipeline.model.preparation import PreparedTraining, holdout_seen
from twotower_pipeline.model.serving_path import user_histories

Embed = Callable[[dict[str, np.ndarray]], np.ndarray]

MASK_INPUT = "hist_video_idx"  # the user tower's padding mask is hist_video_idx > 0 (towers.py)
HISTORY_INPUTS = ("hist_video_idx", "hist_genre_idx", "hist_maker_idx", "hist_price", "hist_age_days")

# How a group is shuffled.
POSITIONS = "valid history positions"  # values among the non-padding positions of all users
ROWS = "rows"  # whole rows across users (user groups) or videos (item groups)


@dataclass(frozen=True)
class FeatureGroup:
    tower: str  # "user" or "item"
    inputs: tuple[str, ...]  # permuted together (the same permutation)
    how: str = ROWS
    column: int | None = None  # only this column of a 2-d numeric input


FEATURE_GROUPS: dict[str, FeatureGroup] = {
    "user: liked videos": FeatureGroup("user", ("hist_video_idx",), POSITIONS),
    "user: genres of liked videos": FeatureGroup("user", ("hist_genre_idx",), POSITIONS),
    "user: makers of liked videos": FeatureGroup("user", ("hist_maker_idx",), POSITIONS),
    "user: prices of liked videos": FeatureGroup("user", ("hist_price",), POSITIONS),
    "user: recency of likes": FeatureGroup("user", ("hist_age_days",), POSITIONS),
    "user: whole history": FeatureGroup("user", HISTORY_INPUTS, ROWS),
    "user: demographics": FeatureGroup("user", ("user_age_range_idx", "user_region_idx"), ROWS),
    "item: video id": FeatureGroup("item", ("video_idx",)),
    "item: genre": FeatureGroup("item", ("genre_idx",)),
    "item: maker": FeatureGroup("item", ("maker_idx",)),
    "item: title and description": FeatureGroup("item", ("text_idx", "text_weight")),
    "item: performers": FeatureGroup("item", ("performer_idx",)),
    "item: tags": FeatureGroup("item", ("tag_idx",)),
    "item: price": FeatureGroup("item", ("numeric",), ROWS, 0),
    "item: duration": FeatureGroup("item", ("numeric",), ROWS, 1),
    "item: popularity": FeatureGroup("item", ("numeric",), ROWS, 2),
    "item: age": FeatureGroup("item", ("numeric",), ROWS, 3),
}


@dataclass(frozen=True)
class GroupImportance:
    """The drop in Recall@50 when the group is shuffled: mean and standard deviation (ddof=1;
    0 with one shuffle) over ``repeats`` shuffles."""

    mean: float
    std: float
    repeats: int

    @property
    def low(self) -> float:
        return self.mean - self.std

    @property
    def high(self) -> float:
        return self.mean + self.std

    def covers_zero(self) -> bool:
        """Whether mean +- std (the interval the chart draws) includes 0."""
        return self.low <= 0.0 <= self.high


def shuffle_group(inputs: Mapping[str, np.ndarray], group: FeatureGroup,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A copy of ``inputs`` (one tower's) with ``group`` shuffled; every other input is the same
    array, and a history group's padding positions and mask are untouched."""
    shuffled = dict(inputs)
    if group.how == POSITIONS:
        valid = np.asarray(inputs[MASK_INPUT]) > 0
        permutation = rng.permutation(int(valid.sum()))
        for name in group.inputs:
            values = np.array(inputs[name], copy=True)
            values[valid] = values[valid][permutation]
            shuffled[name] = values
        if not np.array_equal(np.asarray(shuffled[MASK_INPUT]) > 0, valid):
            raise AssertionError("a history shuffle changed the padding mask")
        return shuffled
    permutation = rng.permutation(len(next(iter(inputs.values()))))
    for name in group.inputs:
        if group.column is None:
            shuffled[name] = np.asarray(inputs[name])[permutation]
        else:
            values = np.array(inputs[name], copy=True)
            values[:, group.column] = values[permutation, group.column]
            shuffled[name] = values
    return shuffled


def served_recall(user_vectors: np.ndarray, item_vectors: np.ndarray, seen: list[np.ndarray],
                  relevant: list[np.ndarray], chunk: int = 256) -> float:
    """Mean Recall@50 of the users' top 50 by dot product, their own likes excluded: what
    ``evaluate_ranker(vector_scores(...))`` reports (but for ties at the 50th place, which count as
    hits here), without the other metrics' cost: a held-out video is a hit when its score reaches
    the 50th highest score of the videos the user has not liked (a partition, not a sort)."""
    if not len(relevant):
        return 0.0
    item_vectors = np.asarray(item_vectors, dtype=np.float32)
    n_items = len(item_vectors)
    k = min(RECALL_K, n_items)
    recalls = []
    for start in range(0, len(user_vectors), chunk):
        scores = np.asarray(user_vectors[start:start + chunk], dtype=np.float32) @ item_vectors.T
        wanted = relevant[start:start + chunk]
        for u, rows in enumerate(seen[start:start + chunk]):
            scores[u, rows] = -np.inf
        own = [scores[u, rows] for u, rows in enumerate(wanted)]
        scores.partition(n_items - k, axis=1)  # in place: column n_items - k holds each row's k-th highest
        threshold = scores[:, n_items - k]
        recalls += [float(((values >= threshold[u]) & (values > -np.inf)).sum()) / len(wanted[u])
                    for u, values in enumerate(own)]
    return float(np.mean(recalls))


def permutation_importance(prepared: PreparedTraining, embed_users_of: Embed, embed_items_of: Embed,
                           repeats: int = 5, seed: int = 0, max_users: int = 500,
                           groups: Mapping[str, FeatureGroup] = FEATURE_GROUPS) -> dict[str, GroupImportance]:
    """Each group's drop in served Recall@50 on (up to ``max_users`` of) the held-out users,
    over ``repeats`` shuffles. Item inputs are the run's (``prepared.items``); the users' inputs are
    their histories as served (every training like, of any age)."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.permutation(len(prepared.holdout_user_ids))[:max_users])
    users = prepared.holdout_user_ids[picked]
    histories = user_histories(prepared.spec, prepared.snapshot, prepared.tables, only_users=set(users))
    order = pd.Index(histories.user_ids).get_indexer(users)
    if (order < 0).any():
        raise ValueError("a held-out user has no training likes, so no served vector to shuffle the inputs of")
    user_inputs = {name: values[order] for name, values in histories.inputs.items()}
    all_seen = holdout_seen(prepared)
    seen = [all_seen[i] for i in picked]
    relevant = [prepared.holdout_relevant[i] for i in picked]
    base_users = np.asarray(embed_users_of(user_inputs))
    base_items = np.asarray(embed_items_of(prepared.items))
    baseline = served_recall(base_users, base_items, seen, relevant)

    importance = {}
    n_users = len(users)
    for g, (name, group) in enumerate(groups.items()):
        rngs = [np.random.default_rng([seed, g, r]) for r in range(repeats)]  # independent of other groups
        if group.tower == "user":
            # All the shuffles' users in one call: a few hundred users cost less than a call's overhead.
            copies = [shuffle_group(user_inputs, group, rng) for rng in rngs]
            stacked = np.asarray(embed_users_of({k: np.concatenate([c[k] for c in copies]) for k in user_inputs}))
            scores = [served_recall(stacked[r * n_users:(r + 1) * n_users], base_items, seen, relevant)
                      for r in range(repeats)]
        else:
            scores = [served_recall(base_users, np.asarray(embed_items_of(shuffle_group(prepared.items, group, rng))),
                                    seen, relevant) for rng in rngs]
        drops = [baseline - score for score in scores]
        importance[name] = GroupImportance(float(np.mean(drops)),
                                           float(np.std(drops, ddof=1)) if repeats > 1 else 0.0, repeats)
    return importance
