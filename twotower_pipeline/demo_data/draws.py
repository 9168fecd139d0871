"""Vectorised drawing helpers shared by the parts of the generator.

The generator must stay fast at a million likes, so every part draws whole arrays at once; the
few patterns they share (an item per group by weight, distinct picks per row, seeded UUIDs) live
here once instead of in loops in each part.
"""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def standardised(x: np.ndarray) -> np.ndarray:
    """Per column: zero mean, unit standard deviation (constant columns become zero)."""
    centred = x - x.mean(axis=0)
    return centred / np.maximum(x.std(axis=0), 1e-12)


def draw_within_groups(
    rng: np.random.Generator, item_group: np.ndarray, item_weight: np.ndarray, wanted_group: np.ndarray
) -> np.ndarray:
    """One item per entry of ``wanted_group``, ∝ weight among the items of that group.

    Entries whose group has no items fall back to all items, so small catalogues still work.
    """
    order = np.argsort(item_group, kind="stable")
    sorted_group = item_group[order]
    cum = np.concatenate([[0.0], np.cumsum(item_weight[order], dtype=np.float64)])
    wanted = np.asarray(wanted_group).ravel()
    start = np.searchsorted(sorted_group, wanted, side="left")
    end = np.searchsorted(sorted_group, wanted, side="right")
    empty = start == end
    start[empty], end[empty] = 0, len(order)
    target = cum[start] + rng.random(len(wanted)) * (cum[end] - cum[start])
    position = np.clip(np.searchsorted(cum, target, side="right") - 1, start, end - 1)
    return order[position].reshape(np.shape(wanted_group))


def distinct_pick(
    rng: np.random.Generator, candidates: np.ndarray, wanted: np.ndarray, spares: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``wanted[i]`` distinct items from row i of candidates; returns (row, item) pairs.

    Items are taken at random among a row's distinct candidates; the last ``spares`` columns
    (distinct by construction) are used only when the others have too few distinct items.
    """
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates, order, axis=1)
    repeat_sorted = np.zeros(candidates.shape, dtype=bool)
    repeat_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    repeat = np.empty_like(repeat_sorted)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    column = np.arange(candidates.shape[1])
    key = rng.random(candidates.shape) + (column >= candidates.shape[1] - spares)
    key[repeat] = 3.0  # repeats sort last and are never taken
    rank = np.argsort(key, axis=1)
    keep = (column[None, :] < wanted[:, None]) & (np.take_along_axis(key, rank, axis=1) < 3.0)
    rows, cols = np.nonzero(keep)
    return rows, np.take_along_axis(candidates, rank, axis=1)[rows, cols]


def spare_items(rng: np.random.Generator, n_rows: int, n_items: int, count: int) -> np.ndarray:
    """``count`` distinct items per row (consecutive from a random start), for distinct_pick."""
    return (rng.integers(n_items, size=n_rows)[:, None] + np.arange(count)[None, :]) % n_items


def weighted_order(rng: np.random.Generator, weight: np.ndarray) -> np.ndarray:
    """All items in a random order, heavier ones likelier first (sampling without replacement)."""
    return np.argsort(rng.exponential(size=len(weight)) / weight, kind="stable")


def mean_rows(vectors: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], n_rows: int) -> np.ndarray:
    """Mean of the vectors attached to each row through (row, item) pairs."""
    rows, items = pairs
    total = np.zeros((n_rows, vectors.shape[1]))
    np.add.at(total, rows, vectors[items])
    return total / np.maximum(np.bincount(rows, minlength=n_rows), 1)[:, None]


def group_lists(pairs: tuple[np.ndarray, np.ndarray], n_rows: int) -> list[list[int]]:
    rows, items = pairs
    order = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(n_rows + 1))
    sorted_items = items[order].tolist()
    return [sorted_items[bounds[i] : bounds[i + 1]] for i in range(n_rows)]


def unique_names(names: list[str]) -> list[str]:
    """Number repeated names ("X", "X 2", ...): the app's name columns are unique."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out


def uuid_strings(rng: np.random.Generator, n: int) -> list[str]:
    """Random (version 4) UUIDs drawn from the seeded generator, so ids are reproducible."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = raw.tobytes().hex()
    return [
        f"{hexed[i:i + 8]}-{hexed[i + 8:i + 12]}-{hexed[i + 12:i + 16]}-{hexed[i + 16:i + 20]}-{hexed[i + 20:i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


class TakenKeys:
    """A growing set of int keys (user × videos + video) that rejection sampling tests each round.

    np.isin and np.union1d against the whole set cost a sort of it per round, and rejection
    rounds after the first are small; so the set is a sorted array (tested with searchsorted)
    plus a Python set for what later, small rounds add.
    """

    _MERGE_AT = 20_000

    def __init__(self, keys: np.ndarray) -> None:
        self._sorted = np.unique(np.asarray(keys, dtype=np.int64))
        self._recent: set[int] = set()

    def contains(self, keys: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self._sorted, keys)
        hit = self._sorted[np.minimum(at, max(len(self._sorted) - 1, 0))] == keys if len(self._sorted) else (
            np.zeros(len(keys), dtype=bool))
        if self._recent:
            hit |= np.fromiter((k in self._recent for k in keys.tolist()), dtype=bool, count=len(keys))
        return hit

    def add(self, keys: np.ndarray) -> None:
        if len(keys) + len(self._recent) > self._MERGE_AT:
            self._sorted = np.union1d(self._sorted, np.concatenate([keys, np.fromiter(self._recent, dtype=np.int64)]))
            self._recent = set()
        else:
            self._recent.update(keys.tolist())


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """True at the first occurrence of each key (a batch may draw one video twice for a user)."""
    _, first = np.unique(keys, return_index=True)
    once = np.zeros(len(keys), dtype=bool)
    once[first] = True
    return once
