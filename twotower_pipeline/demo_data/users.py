"""Users' hidden tastes and how much they like: the part of a user that content can explain.

A taste is a point in the catalogue's latent space built from one to three favourite genres and
a few makers, performers and tags within them, so content-based features can learn it. Tastes
drift during the six months (the start taste gives way to an end taste), so a time-based split
is harder than a random one; and activity is heavy-tailed, so a few users like a lot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twotower_pipeline.demo_data.catalogue import GENRES, LATENT_DIM, Catalogue
from twotower_pipeline.demo_data.draws import draw_within_groups
from twotower_pipeline.demo_data.size import MIN_LIKES_PER_USER, DemoSize, user_like_cap

TASTE_SHARPNESS = 3.5
"""How strongly affinity beats popularity and noise in a taste-led like."""


@dataclass
class Users:
    """Hidden tastes: where each user starts, where they drift to, and how they react to price."""

    start_taste: np.ndarray
    end_taste: np.ndarray
    drift_midpoint: np.ndarray  # fraction of the like window
    drift_width: np.ndarray
    price_sensitivity: np.ndarray
    like_counts: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, size: DemoSize, catalogue: Catalogue) -> Users:
        n = size.users
        start = _tastes(rng, n, catalogue)
        # The end state keeps part of the start and adds newly found genres and names.
        keep = rng.beta(2.0, 2.5, size=n)[:, None]
        end = keep * start + (1.0 - keep) * _tastes(rng, n, catalogue)
        end *= np.linalg.norm(start, axis=1, keepdims=True) / np.linalg.norm(end, axis=1, keepdims=True)
        return cls(
            start_taste=start,
            end_taste=end,
            drift_midpoint=rng.uniform(0.2, 0.8, size=n),
            drift_width=rng.uniform(0.1, 0.5, size=n),
            price_sensitivity=rng.gamma(2.0, 0.3, size=n),
            like_counts=_like_counts(rng, size),
        )


def end_taste_share(progress: np.ndarray, midpoint: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Chance that a like at ``progress`` (0 to 1 through the like window) comes from the end taste:
    0 before ``midpoint - width / 2``, 1 after ``midpoint + width / 2``, linear in between."""
    return np.clip((progress - midpoint) / width + 0.5, 0.0, 1.0)


def _tastes(rng: np.random.Generator, n: int, catalogue: Catalogue) -> np.ndarray:
    """Sparse tastes: 1-3 favourite genres, and a few makers, performers and tags within them."""
    n_genres = len(GENRES)
    genre_pull = np.bincount(catalogue.genre_of_video, minlength=n_genres) + 1.0
    key = 0.7 * np.log(genre_pull)[None, :] + rng.gumbel(size=(n, n_genres))
    rank = np.argsort(np.argsort(-key, axis=1), axis=1)
    n_favourites = rng.choice([1, 2, 3], size=n, p=[0.35, 0.4, 0.25])
    weights = np.where(rank < n_favourites[:, None], rng.gamma(2.0, 1.0, size=(n, n_genres)), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    genre_part = weights @ catalogue.genre_vectors

    def favourites(
        item_group: np.ndarray, item_weight: np.ndarray, vectors: np.ndarray, most: int, least: int
    ) -> np.ndarray:
        # Each slot: a favourite genre (by weight), then an item of that genre.
        cum = np.cumsum(weights, axis=1)
        slot_genre = (rng.random((n, most))[:, :, None] > cum[:, None, :]).sum(axis=2).clip(0, n_genres - 1)
        items = draw_within_groups(rng, item_group, item_weight, slot_genre)
        count = rng.integers(least, most + 1, size=n)
        used = np.arange(most)[None, :] < count[:, None]
        return (vectors[items] * used[:, :, None]).sum(axis=1) / np.maximum(count, 1)[:, None]

    maker_part = favourites(catalogue.maker_home_genre, catalogue.maker_size, catalogue.maker_vectors, 2, 0)
    performer_part = favourites(
        catalogue.performer_genre, catalogue.performer_popularity, catalogue.performer_vectors, 3, 0
    )
    tag_part = favourites(catalogue.tag_genre, catalogue.tag_popularity, catalogue.tag_vectors, 3, 1)
    return (
        genre_part
        + 0.5 * maker_part
        + 0.5 * performer_part
        + 0.4 * tag_part
        + 0.35 * rng.normal(size=(n, LATENT_DIM)) / np.sqrt(LATENT_DIM)
    )


def _like_counts(rng: np.random.Generator, size: DemoSize) -> np.ndarray:
    """Heavy-tailed activity: at least 5 each, exactly ``size.likes`` in all, none above the cap."""
    cap = user_like_cap(size)
    extra_total = size.likes - MIN_LIKES_PER_USER * size.users
    room = cap - MIN_LIKES_PER_USER
    activity = rng.lognormal(0.0, 1.3, size=size.users)
    share = np.zeros(size.users)
    free = np.ones(size.users, dtype=bool)
    remaining = float(extra_total)
    while remaining > 1e-9 and free.any():  # water-filling: capped users pass on their excess
        share[free] += remaining * activity[free] / activity[free].sum()
        over = share > room
        remaining = float((share[over] - room).sum())
        share[over] = room
        free &= ~over
    counts = np.floor(share).astype(np.int64)
    shortfall = extra_total - int(counts.sum())
    if shortfall:
        fraction = np.where(counts < room, share - counts, -1.0)
        counts[np.argsort(-fraction, kind="stable")[:shortfall]] += 1
    return MIN_LIKES_PER_USER + counts
