"""What can be asked of the generator, and the limits every part of it relies on.

The sizes are checked once, up front, so that no part deep in the drawing has to fail halfway
with a message about its own internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

LIKE_WINDOW = timedelta(days=182)
"""Likes span the six months (26 weeks) ending at ``now``."""
CATALOGUE_SPAN = timedelta(days=3 * 365)
"""Videos were created over the three years before ``now``."""
MIN_LIKES_PER_USER = 5
MAX_USER_SHARE = 0.05
"""No single user has more than this share of all likes (unless there are too few users)."""


class DemoDataError(ValueError):
    """The demo data cannot be generated or loaded as asked."""


@dataclass(frozen=True)
class DemoSize:
    videos: int = 50_000
    users: int = 1_000
    likes: int = 100_000
    seed: int = 7


def tiny_demo_size(seed: int = 7) -> DemoSize:
    """Small enough for unit tests (well under a second), big enough to show the structure."""
    return DemoSize(videos=600, users=60, likes=3_000, seed=seed)


def check_size(size: DemoSize) -> None:
    if size.videos < 50 or size.users < 1:
        raise DemoDataError(f"need at least 50 videos and 1 user, got {size}")
    if size.likes < MIN_LIKES_PER_USER * size.users:
        raise DemoDataError(
            f"{size.likes} likes cannot give each of {size.users} users at least "
            f"{MIN_LIKES_PER_USER} likes; ask for at least {MIN_LIKES_PER_USER * size.users}"
        )
    if size.likes > user_like_cap(size) * size.users:
        raise DemoDataError(
            f"{size.likes} likes are too many for {size.users} users and {size.videos} videos: "
            f"a user can like at most {user_like_cap(size)} of them"
        )


def user_like_cap(size: DemoSize) -> int:
    # ~5% of all likes, loosened only when there are too few users to share them out,
    # and never more than a third of the catalogue, which would leave nothing to choose from.
    share_cap = max(int(np.ceil(MAX_USER_SHARE * size.likes)), int(np.ceil(2 * size.likes / size.users)))
    return max(MIN_LIKES_PER_USER, min(share_cap, size.videos // 3))
