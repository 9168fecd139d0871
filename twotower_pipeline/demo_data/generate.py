"""One entry point that draws every part in a fixed order, each from its own seeded Generator.

Each part (catalogue, users, likes, ids, profiles, communities, activity, spelling variants) has
its own child of the seed, so the same ``DemoSize`` and ``now`` give identical frames, ids
included, and a change to one part's draws leaves the others' as they were: the catalogue, the
users' tastes and the profiles' age ranges and regions are still what they were before
communities and sessions.

The language (``lang``: ``LANGUAGES``) only chooses the words: the same size and seed give the
same videos, users, likes, ids and hidden truth in English and in Japanese.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from twotower_pipeline.demo_data.activity import Activity
from twotower_pipeline.demo_data.catalogue import Catalogue
from twotower_pipeline.demo_data.communities import Communities
from twotower_pipeline.demo_data.frames import DemoData, build_frames
from twotower_pipeline.demo_data.likes import draw_likes
from twotower_pipeline.demo_data.profiles import Profiles
from twotower_pipeline.demo_data.size import DemoDataError, DemoSize, check_size
from twotower_pipeline.demo_data.users import Users
from twotower_pipeline.demo_data.variants import with_spelling_variants
from twotower_pipeline.demo_data.words import ENGLISH, WordPools
from twotower_pipeline.demo_data.words_ja import JAPANESE

LANGUAGES: dict[str, WordPools] = {"en": ENGLISH, "ja": JAPANESE}
"""The languages the demo catalogue can be written in."""


def generate_demo_data(size: DemoSize, now: datetime, words: WordPools | None = None, *,
                       lang: str = "en") -> DemoData:
    """Draw the catalogue, the users' hidden tastes, communities and activity, and their likes up to
    ``now``, written in ``lang`` (a key of ``LANGUAGES``) or in the given ``words``."""
    check_size(size)
    if now.tzinfo is None or now.utcoffset() is None:
        raise DemoDataError("now must be timezone-aware (e.g. datetime.now(timezone.utc))")
    if words is None:
        if lang not in LANGUAGES:
            raise DemoDataError(f"no demo catalogue in {lang!r}; choose one of {', '.join(LANGUAGES)}")
        words = LANGUAGES[lang]
    now_s = int(now.astimezone(UTC).timestamp())
    # Spawned children do not depend on how many are spawned: the first seven are what they were
    # before the eighth (spelling variants) existed.
    catalogue_rng, users_rng, likes_rng, ids_rng, profiles_rng, communities_rng, activity_rng, variants_rng = (
        np.random.default_rng(seq) for seq in np.random.SeedSequence(size.seed).spawn(8)
    )
    catalogue = Catalogue.draw(catalogue_rng, size, now_s, words)
    users = Users.draw(users_rng, size, catalogue)
    communities = Communities.draw(communities_rng, size, catalogue, users)
    activity = Activity.draw(activity_rng, users.like_counts, now_s)
    like_user, like_video, like_s = draw_likes(likes_rng, catalogue, users, communities, activity, now_s)
    profiles = Profiles.draw(profiles_rng, size, catalogue, users, like_user, like_s, now_s)
    data = build_frames(ids_rng, size, catalogue, users, communities, activity, like_user, like_video, like_s,
                        profiles, now_s)
    return with_spelling_variants(data, variants_rng) if words.spelling_variants else data
