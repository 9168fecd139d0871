"""Optional demographics (age range, region) with real but modest signal.

About 80% of users have a ``profiles`` row, derived from their hidden start taste plus noise:
age ranges lean towards different genres, and each region's users lean a little towards a few
"local" makers. Modest on purpose: a model that leans on demographics should gain a little for
users with few likes, not be able to skip their likes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twotower_pipeline.demo_data.catalogue import GENRES, Catalogue
from twotower_pipeline.demo_data.draws import standardised, weighted_order
from twotower_pipeline.demo_data.size import CATALOGUE_SPAN, DemoSize
from twotower_pipeline.demo_data.users import Users

PROFILE_SHARE = 0.8
"""Share of users with a profiles row; the rest never filled one in."""
PROFILE_MISSING_SHARE = 0.05
"""Share of profile rows with age_range and/or region left NULL."""
AGE_RANGES: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
_AGE_RANGE_SHARE = np.array([0.16, 0.26, 0.24, 0.19, 0.15])
AGE_TASTE_CORRELATION = 0.6
"""Correlation between the age score (which picks the age range) and the user's taste along
the genres' age lean (``Genre.age_lean``); the rest is noise, so age predicts taste only somewhat."""
# Roughly by population, tilted a little towards the big metropolitan areas (streaming users
# are), so Kanto and then Kansai are the biggest.
REGIONS: tuple[str, ...] = ("Hokkaido", "Tohoku", "Kanto", "Chubu", "Kansai", "Chugoku", "Shikoku", "Kyushu")
_REGION_SHARE = np.array([0.05, 0.06, 0.36, 0.13, 0.20, 0.06, 0.04, 0.10])
REGION_LOCAL_MAKERS = 2
"""Makers based in each region; users whose taste leans towards them are likelier to live there."""
REGION_TASTE_PULL = 0.5
"""Log-odds added to a region per standard deviation of the user's affinity to its makers (mild)."""


@dataclass
class Profiles:
    """Who filled in a profile, and what they entered (-1 where they left a field empty)."""

    user: np.ndarray  # user index of each profile row, in created_at order
    age_range: np.ndarray  # index into AGE_RANGES, or -1
    region: np.ndarray  # index into REGIONS, or -1
    created_s: np.ndarray

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        size: DemoSize,
        catalogue: Catalogue,
        users: Users,
        like_user: np.ndarray,
        like_s: np.ndarray,
        now_s: int,
    ) -> Profiles:
        """Age from the taste's projection on the genres' age axis plus noise; region ∝ its
        population share, tilted towards users who like its local makers."""
        n = size.users
        taste = users.start_taste

        # Age: rank users by a noisy age score and cut the ranking at the age ranges' shares.
        lean = np.array([g.age_lean for g in GENRES])
        along_age = standardised(taste @ (lean @ catalogue.genre_vectors))
        score = AGE_TASTE_CORRELATION * along_age + np.sqrt(1.0 - AGE_TASTE_CORRELATION**2) * rng.normal(size=n)
        cut = np.floor(np.cumsum(_AGE_RANGE_SHARE)[:-1] * n).astype(np.int64)
        age_range = np.searchsorted(cut, np.argsort(np.argsort(score)), side="right")

        # Region: each has a few local makers (the bigger ones more likely); a user's log-odds
        # for a region rise with their affinity to its makers, relative to other users.
        n_makers = len(catalogue.maker_names)
        maker_order = weighted_order(rng, catalogue.maker_size)
        n_local = len(REGIONS) * REGION_LOCAL_MAKERS
        local = maker_order[np.arange(n_local) % n_makers].reshape(len(REGIONS), REGION_LOCAL_MAKERS)
        affinity = taste @ catalogue.maker_vectors[local].mean(axis=1).T  # users × regions
        logit = np.log(_REGION_SHARE)[None, :] + REGION_TASTE_PULL * standardised(affinity)
        region = (rng.gumbel(size=(n, len(REGIONS))) + logit).argmax(axis=1)

        # Who has a profile, and which rows left age range, region or both empty.
        user = np.sort(rng.permutation(n)[: int(round(PROFILE_SHARE * n))])
        n_rows = len(user)
        age_range, region = age_range[user], region[user]
        gaps = rng.permutation(n_rows)[: int(round(PROFILE_MISSING_SHARE * n_rows))]
        gap_kind = rng.choice(3, size=len(gaps), p=[0.4, 0.4, 0.2])  # age, region, both
        age_range[gaps[gap_kind != 1]] = -1
        region[gaps[gap_kind != 0]] = -1

        # Signed up before their first like: days to months before, never before the catalogue.
        first_like_s = np.full(n, now_s, dtype=np.int64)
        np.minimum.at(first_like_s, like_user, like_s)
        lead_s = 3600 + rng.exponential(90 * 86_400, size=n_rows)
        created_s = np.maximum(
            first_like_s[user] - lead_s.astype(np.int64), now_s - int(CATALOGUE_SPAN.total_seconds())
        )
        order = np.lexsort((user, created_s))
        return cls(user=user[order], age_range=age_range[order], region=region[order], created_s=created_s[order])
