"""Negative sampling for the margin loss (design document: 60% random, 30% hard, 10% popular).

- random: any catalogue video;
- hard: among the videos the current model scores highest for the user but the user never
  liked (refreshed every epoch). The pool is wide (top 200 by default): the very top of it is
  often a future like, and treating those as negatives teaches the model the wrong thing;
- popular: drawn by popularity, i.e. popular videos the user did not like.

A negative is never one of the user's own training likes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twotower_pipeline.model.evaluation import top_k_by_vectors


@dataclass(frozen=True)
class NegativeMix:
    random: float = 0.6
    hard: float = 0.3
    popular: float = 0.1

    def __post_init__(self) -> None:
        shares = (self.random, self.hard, self.popular)
        if min(shares) < 0 or not np.isclose(sum(shares), 1.0):
            raise ValueError(f"negative mix shares must be >= 0 and sum to 1, got {shares}")


class NegativeSampler:
    """Draws negatives per example; ``user_of_example[i]`` indexes ``liked`` and the hard pools."""

    def __init__(
        self,
        liked: list[np.ndarray],
        popularity: np.ndarray,
        mix: NegativeMix = NegativeMix(),
        hard_pool_size: int = 200,
        seed: int = 0,
    ) -> None:
        self.liked = [np.unique(rows) for rows in liked]
        self.n_items = len(popularity)
        weights = popularity.astype(np.float64) + 1e-9
        self.popular_p = weights / weights.sum()
        self.mix = mix
        self.hard_pool_size = min(hard_pool_size, self.n_items)
        self.rng = np.random.default_rng(seed)
        # Until the model has scored anything, the hardest negatives are popular ones.
        top_popular = np.argsort(-popularity, kind="stable")[: self.hard_pool_size + 1000]
        self.hard_pools = [np.setdiff1d(top_popular, rows)[: self.hard_pool_size] for rows in self.liked]

    def refresh_hard_pools(self, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        """Highest-scored videos each user has not liked, by the current towers."""
        top = top_k_by_vectors(user_vectors, item_vectors, self.liked, self.hard_pool_size)
        self.hard_pools = [row[row >= 0] for row in top]

    def sources(self, n: int) -> np.ndarray:
        """Which sampler each of n negatives comes from: 0 random, 1 hard, 2 popular."""
        return self.rng.choice(3, size=n, p=[self.mix.random, self.mix.hard, self.mix.popular])

    def _draw(self, source: int, user: int) -> int:
        if source == 1 and len(self.hard_pools[user]):
            pool = self.hard_pools[user]
            return int(pool[self.rng.integers(len(pool))])
        if source == 2:
            return int(self.rng.choice(self.n_items, p=self.popular_p))
        return int(self.rng.integers(0, self.n_items))

    def sample(self, user_of_example: np.ndarray, per_example: int) -> np.ndarray:
        """Negative catalogue rows [len(user_of_example), per_example]."""
        n = len(user_of_example) * per_example
        users = np.repeat(user_of_example, per_example)
        source = self.sources(n)
        out = self.rng.integers(0, self.n_items, size=n)
        popular = source == 2
        out[popular] = self.rng.choice(self.n_items, size=int(popular.sum()), p=self.popular_p)
        for i in np.flatnonzero(source == 1):
            out[i] = self._draw(1, users[i])
        # A negative that is one of the user's own likes is redrawn from the same source
        # (uniformly after a few tries, e.g. when the user liked every popular video).
        for i in range(n):
            liked = self.liked[users[i]]
            tries = 0
            while _contains(liked, out[i]):
                out[i] = self._draw(source[i] if tries < 10 else 0, users[i])
                tries += 1
                if tries > 50:
                    break
        return out.reshape(len(user_of_example), per_example)


def _contains(sorted_rows: np.ndarray, row: int) -> bool:
    position = np.searchsorted(sorted_rows, row)
    return position < len(sorted_rows) and sorted_rows[position] == row
