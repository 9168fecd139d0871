"""The catalogue: videos and everything the app stores about them, plus the hidden vector that
says what each video is about.

Content has to carry real signal (a cold video must be placeable from its genre, maker,
performers, tags and text) without being the whole story: each video's hidden vector mixes what
the app can see with noise it cannot, and its popularity is partly its maker's and performers'
pull, partly luck. What users do with the videos (tastes, communities) lives elsewhere, so the
catalogue is the same whatever the likes are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twotower_pipeline.demo_data.draws import (
    distinct_pick,
    draw_within_groups,
    mean_rows,
    spare_items,
    unique_names,
    unit_rows,
)
from twotower_pipeline.demo_data.size import CATALOGUE_SPAN, DemoSize
from twotower_pipeline.demo_data.texts import titles_and_descriptions
from twotower_pipeline.demo_data.words import WordPools


@dataclass(frozen=True)
class Genre:
    key: str
    super_genre: str
    """Genres of one super-genre attract the same users."""
    median_minutes: int
    age_lean: float
    """How much older (+) or younger (-) the genre's audience is."""


# Listed from the most to the least common genre.
GENRES: tuple[Genre, ...] = (
    Genre("Drama", "story", 105, 0.8),
    Genre("Comedy", "story", 35, 0.0),
    Genre("Romance", "story", 95, -0.5),
    Genre("Action", "spectacle", 110, 0.0),
    Genre("Thriller", "suspense", 100, 0.3),
    Genre("Anime", "spectacle", 24, -1.0),
    Genre("Documentary", "real", 75, 0.9),
    Genre("Horror", "suspense", 90, -0.5),
    Genre("Cooking", "lifestyle", 20, 0.5),
    Genre("Music", "performance", 60, -0.3),
    Genre("Mystery", "suspense", 95, 0.5),
    Genre("Science Fiction", "spectacle", 115, -0.2),
    Genre("Travel", "lifestyle", 30, 0.7),
    Genre("Fantasy", "spectacle", 120, -0.6),
    Genre("Crime", "suspense", 105, 0.4),
    Genre("Sports", "performance", 45, 0.2),
    Genre("Fitness", "lifestyle", 25, 0.0),
    Genre("Nature", "real", 50, 0.8),
    Genre("Family", "story", 85, 0.6),
    Genre("History", "real", 70, 1.0),
    Genre("Gaming", "performance", 40, -1.0),
    Genre("Dance", "performance", 30, -0.7),
    Genre("Fashion", "lifestyle", 20, -0.8),
    Genre("Education", "real", 45, -0.4),
)
LATENT_DIM = 32
# Makers sell in one of three price bands; prices are log-normal around the band's median.
_PRICE_TIER_MEDIAN_YEN = np.array([880.0, 1980.0, 3980.0])
_PRICE_TIER_SHARE = np.array([0.3, 0.5, 0.2])
REFERENCE_PRICE_YEN = 1980.0


@dataclass
class Catalogue:
    """Videos with their hidden vectors, sorted by created_at (oldest first)."""

    genre_names: list[str]
    genre_vectors: np.ndarray
    genre_of_video: np.ndarray
    maker_names: list[str]
    maker_of_video: np.ndarray
    maker_home_genre: np.ndarray
    maker_size: np.ndarray
    maker_vectors: np.ndarray
    performer_names: list[str]
    performer_genre: np.ndarray
    performer_popularity: np.ndarray
    performer_vectors: np.ndarray
    tag_names: list[str]
    tag_genre: np.ndarray  # -1 for general tags
    tag_popularity: np.ndarray
    tag_vectors: np.ndarray
    video_tag_pairs: tuple[np.ndarray, np.ndarray]
    video_performer_pairs: tuple[np.ndarray, np.ndarray]
    price: np.ndarray
    duration_s: np.ndarray
    created_s: np.ndarray
    vectors: np.ndarray
    popularity: np.ndarray  # log-weight added to every user's affinity
    titles: list[str]
    descriptions: list[str]

    @property
    def log_relative_price(self) -> np.ndarray:
        return np.log(self.price / REFERENCE_PRICE_YEN)

    @classmethod
    def draw(cls, rng: np.random.Generator, size: DemoSize, now_s: int, words: WordPools) -> Catalogue:
        n_videos = size.videos
        n_genres = len(GENRES)
        genre_share = 1.0 / (np.arange(n_genres) + 2.0) ** 0.9
        genre_share /= genre_share.sum()

        # Genres of one super-genre point the same way, so their fans overlap.
        super_genres = sorted({g.super_genre for g in GENRES})
        super_vectors = unit_rows(rng.normal(size=(len(super_genres), LATENT_DIM)))
        genre_super = np.array([super_genres.index(g.super_genre) for g in GENRES])
        genre_vectors = unit_rows(
            rng.normal(size=(n_genres, LATENT_DIM)) / np.sqrt(LATENT_DIM)
            + 0.45 * super_vectors[genre_super]
        )

        # Makers: a home genre plus a mix, a size (how much they publish) and a price tier.
        n_makers = max(5, n_videos // 100)
        maker_home_genre = rng.choice(n_genres, size=n_makers, p=genre_share)
        maker_mix = 0.35 * rng.dirichlet(np.full(n_genres, 0.25), size=n_makers)
        maker_mix[np.arange(n_makers), maker_home_genre] += 0.65
        maker_size = rng.lognormal(0.0, 0.9, size=n_makers)
        maker_tier = rng.choice(3, size=n_makers, p=_PRICE_TIER_SHARE)
        maker_vectors = unit_rows(
            maker_mix @ genre_vectors + rng.normal(size=(n_makers, LATENT_DIM)) / np.sqrt(LATENT_DIM)
        )
        maker_names = unique_names(
            [
                words.maker_name(a, b, c)
                for a, b, c in zip(
                    rng.integers(len(words.maker_first), size=n_makers),
                    rng.integers(len(words.maker_second), size=n_makers),
                    rng.integers(len(words.maker_suffix), size=n_makers),
                )
            ]
        )

        # Performers: most work for one maker (and so its home genre); a few freelance.
        n_performers = max(10, n_videos // 20)
        freelance = rng.random(n_performers) < 0.15
        performer_maker = draw_within_groups(
            rng, np.zeros(n_makers, dtype=np.int64), maker_size, np.zeros(n_performers, dtype=np.int64)
        )
        performer_maker[freelance] = -1
        performer_genre = np.where(
            freelance, rng.choice(n_genres, size=n_performers, p=genre_share), maker_home_genre[performer_maker]
        )
        performer_popularity = rng.lognormal(0.0, 1.0, size=n_performers)
        performer_vectors = unit_rows(
            rng.normal(size=(n_performers, LATENT_DIM)) / np.sqrt(LATENT_DIM)
            + 0.5 * genre_vectors[performer_genre]
        )
        syllable_a = rng.integers(len(words.given_name_syllables), size=n_performers)
        syllable_b = rng.integers(len(words.given_name_syllables), size=n_performers)
        ending = rng.integers(len(words.given_name_endings), size=n_performers)
        family = rng.integers(len(words.family_names), size=n_performers)
        performer_names = unique_names(
            [words.performer_name(a, b, e, f) for a, b, e, f in zip(syllable_a, syllable_b, ending, family)]
        )

        # Tags: ~300, four in five tied to a genre (round-robin, so every genre gets some).
        n_tags = max(20, min(300, n_videos // 150))
        n_general = min(len(words.general_tags), round(0.2 * n_tags))
        genre_tags = [
            (g, words.genre_themes[GENRES[g].key][w]) for w in range(10) for g in range(n_genres)
        ][: n_tags - n_general]
        tag_names = [name for _, name in genre_tags] + list(words.general_tags[:n_general])
        tag_genre = np.array([g for g, _ in genre_tags] + [-1] * n_general)
        tag_popularity = rng.lognormal(0.0, 0.8, size=len(tag_names))
        tag_vectors = rng.normal(size=(len(tag_names), LATENT_DIM)) / np.sqrt(LATENT_DIM)
        tagged = tag_genre >= 0
        tag_vectors[tagged] += 0.8 * genre_vectors[tag_genre[tagged]]
        tag_vectors = unit_rows(tag_vectors)

        # Videos, oldest first: created over three years, more of them recently.
        age_s = np.sort(rng.beta(1.0, 1.8, size=n_videos))[::-1] * CATALOGUE_SPAN.total_seconds()
        created_s = now_s - np.maximum(age_s.astype(np.int64), 3600)
        maker_of_video = draw_within_groups(
            rng, np.zeros(n_makers, dtype=np.int64), maker_size, np.zeros(n_videos, dtype=np.int64)
        )
        # Mostly the maker's own mix; sometimes any genre, weighted by how common it is.
        from_mix = (rng.random(n_videos)[:, None] > np.cumsum(maker_mix[maker_of_video], axis=1)).sum(axis=1)
        genre_of_video = np.where(
            rng.random(n_videos) < 0.9,
            np.minimum(from_mix, n_genres - 1),
            rng.choice(n_genres, size=n_videos, p=genre_share),
        )

        # 1-3 performers, mostly from the video's maker.
        performer_wanted = rng.choice([1, 2, 3], size=n_videos, p=[0.55, 0.3, 0.15])
        maker_pick = draw_within_groups(
            rng, performer_maker, performer_popularity, np.repeat(maker_of_video[:, None], 5, axis=1)
        )
        any_pick = draw_within_groups(
            rng, np.zeros(n_performers, dtype=np.int64), performer_popularity, np.zeros((n_videos, 5), dtype=np.int64)
        )
        performer_candidates = np.hstack(
            [
                np.where(rng.random((n_videos, 5)) < 0.8, maker_pick, any_pick),
                spare_items(rng, n_videos, n_performers, 3),
            ]
        )
        video_performer_pairs = distinct_pick(rng, performer_candidates, performer_wanted, spares=3)

        # 3-8 tags, mostly the genre's own.
        tag_wanted = 3 + rng.binomial(5, 0.35, size=n_videos)
        genre_pick = draw_within_groups(
            rng, tag_genre, tag_popularity, np.repeat(genre_of_video[:, None], 14, axis=1)
        )
        any_tag = draw_within_groups(
            rng, np.zeros(len(tag_names), dtype=np.int64), tag_popularity, np.zeros((n_videos, 14), dtype=np.int64)
        )
        tag_candidates = np.hstack(
            [
                np.where(rng.random((n_videos, 14)) < 0.7, genre_pick, any_tag),
                spare_items(rng, n_videos, len(tag_names), 8),
            ]
        )
        video_tag_pairs = distinct_pick(rng, tag_candidates, tag_wanted, spares=8)

        # Price: log-normal around the maker's tier, in the shop's "…80 yen" steps.
        raw_price = _PRICE_TIER_MEDIAN_YEN[maker_tier[maker_of_video]] * rng.lognormal(0.0, 0.3, size=n_videos)
        price = np.round(np.clip(raw_price, 500.0, 6000.0) / 100.0) * 100.0 - 20.0
        median_minutes = np.array([g.median_minutes for g in GENRES], dtype=np.float64)
        duration_s = np.clip(
            60.0 * median_minutes[genre_of_video] * rng.lognormal(0.0, 0.35, size=n_videos), 600, 10_800
        ).astype(np.int64)

        # Hidden vector: what the video is about, plus noise nobody can see.
        vectors = (
            1.0 * genre_vectors[genre_of_video]
            + 0.5 * maker_vectors[maker_of_video]
            + 0.5 * mean_rows(performer_vectors, video_performer_pairs, n_videos)
            + 0.4 * mean_rows(tag_vectors, video_tag_pairs, n_videos)
            + 0.5 * rng.normal(size=(n_videos, LATENT_DIM)) / np.sqrt(LATENT_DIM)
        )
        vectors = unit_rows(vectors) * 1.2
        # Popularity: heavy-tailed, partly the maker's and the performers' pull.
        pull = (
            0.35 * np.log(maker_size)[maker_of_video]
            + 0.3 * mean_rows(np.log(performer_popularity)[:, None], video_performer_pairs, n_videos)[:, 0]
            + rng.normal(size=n_videos)
        )
        popularity = 1.2 * (pull - pull.mean()) / pull.std()

        titles, descriptions = titles_and_descriptions(
            rng, words, [g.key for g in GENRES], genre_of_video, tag_names, tag_genre, video_tag_pairs, performer_names,
            video_performer_pairs, maker_names, maker_of_video, duration_s,
        )
        return cls(
            genre_names=[words.genre_names[g.key] for g in GENRES],
            genre_vectors=genre_vectors, genre_of_video=genre_of_video, maker_names=maker_names,
            maker_of_video=maker_of_video, maker_home_genre=maker_home_genre, maker_size=maker_size,
            maker_vectors=maker_vectors, performer_names=performer_names, performer_genre=performer_genre,
            performer_popularity=performer_popularity, performer_vectors=performer_vectors,
            tag_names=tag_names, tag_genre=tag_genre, tag_popularity=tag_popularity,
            tag_vectors=tag_vectors, video_tag_pairs=video_tag_pairs,
            video_performer_pairs=video_performer_pairs, price=price, duration_s=duration_s,
            created_s=created_s, vectors=vectors, popularity=popularity, titles=titles,
            descriptions=descriptions,
        )
