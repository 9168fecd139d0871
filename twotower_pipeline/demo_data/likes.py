"""Which video each like is: a session's mode (one community, or the user's taste), then a video.

A like is led by one thing at a time, as a real binge of one series or a browse through one's
favourite genres is, rather than by a blend of everything the user likes: that is what makes
co-likes informative beyond content, and a session's likes alike. A session is spent in one of
the user's communities (chance: the user's community share; which one: the follow weights) or
led by the user's taste (start or end taste, the end one likelier the later the session). Most
of a session's likes follow its mode; the rest draw a fresh mode the same way, so each like on
its own has the same chance of each mode and the oracle can score a like without its session.

- Community mode: a video of the community, created before the like, ∝ exp(its logit).
- Taste mode: a video created before the like ∝ exp(sharpness · taste·vector + popularity −
  price sensitivity · log relative price).

A video the user already has is redrawn in the same mode; a community with nothing left for the
user hands the like to the taste mode (as the oracle assumes).
"""

from __future__ import annotations

import numpy as np

from twotower_pipeline.demo_data.activity import Activity
from twotower_pipeline.demo_data.catalogue import LATENT_DIM, Catalogue
from twotower_pipeline.demo_data.communities import Communities
from twotower_pipeline.demo_data.draws import TakenKeys, draw_within_groups, first_occurrences
from twotower_pipeline.demo_data.size import LIKE_WINDOW, DemoDataError
from twotower_pipeline.demo_data.users import TASTE_SHARPNESS, Users, end_taste_share

SESSION_FOCUS = 0.85
"""Share of a session's likes that follow the session's mode; the others draw a mode of their own."""
START_TASTE, END_TASTE = -1, -2
"""Modes that are not a community (communities are 0, 1, ...)."""
_SAMPLING_BLOCK = 256
_QUICK_ATTEMPTS = 30
"""Redraws of a community like before drawing among exactly the videos the user has not liked."""


def draw_likes(
    rng: np.random.Generator,
    catalogue: Catalogue,
    users: Users,
    communities: Communities,
    activity: Activity,
    now_s: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, video, epoch seconds) of every like, grouped by user."""
    n_users = len(users.like_counts)
    like_user = np.repeat(np.arange(n_users), users.like_counts)
    like_s = activity.like_s
    window_s = int(LIKE_WINDOW.total_seconds())
    window_start_s = now_s - window_s
    available = np.searchsorted(catalogue.created_s, like_s, side="left")  # videos created strictly before
    if available.min() < 1:
        raise DemoDataError("some likes fall before the first video was created")

    session_mode = _modes(rng, users, communities, activity.session_user,
                          (activity.session_start_s - window_start_s) / window_s)
    fresh = _modes(rng, users, communities, like_user, (like_s - window_start_s) / window_s)
    mode = np.where(rng.random(len(like_user)) < SESSION_FOCUS, session_mode[activity.like_session], fresh)

    like_video = np.full(len(like_user), -1, dtype=np.int64)
    in_community = np.flatnonzero(mode >= 0)
    like_video[in_community] = _sample_in_communities(
        rng, communities, catalogue.created_s, like_user[in_community], mode[in_community], available[in_community]
    )
    ran_dry = in_community[like_video[in_community] < 0]
    progress = (like_s[ran_dry] - window_start_s) / window_s
    end = rng.random(len(ran_dry)) < end_taste_share(
        progress, users.drift_midpoint[like_user[ran_dry]], users.drift_width[like_user[ran_dry]])
    mode[ran_dry] = np.where(end, END_TASTE, START_TASTE)

    by_taste = np.flatnonzero(mode < 0)
    done = np.flatnonzero(like_video >= 0)
    like_video[by_taste] = _sample_by_taste(
        rng, catalogue, users, like_user[by_taste], (mode[by_taste] == END_TASTE).astype(np.int64),
        available[by_taste], like_user[done], like_video[done],
    )
    return like_user, like_video, like_s


def _modes(
    rng: np.random.Generator, users: Users, communities: Communities, user: np.ndarray, progress: np.ndarray
) -> np.ndarray:
    """A mode per entry: a community the user follows (with the user's community share, by the
    user's follow weights), else the start or end taste (the end one as likely as the drift says)."""
    n_users, slots = communities.followed.shape
    pick = draw_within_groups(rng, np.repeat(np.arange(n_users), slots), communities.follow_weight.ravel(), user)
    community = communities.followed.ravel()[pick]
    end = rng.random(len(user)) < end_taste_share(progress, users.drift_midpoint[user], users.drift_width[user])
    taste = np.where(end, END_TASTE, START_TASTE)
    in_community = (rng.random(len(user)) < communities.share[user]) & (community >= 0)
    return np.where(in_community, community, taste)


def _sample_in_communities(
    rng: np.random.Generator,
    communities: Communities,
    created_s: np.ndarray,
    user: np.ndarray,
    community: np.ndarray,
    available: np.ndarray,
) -> np.ndarray:
    """A video per like ∝ exp(logit) among its community's videos created before it that the
    user has not liked in this mode already; -1 where none is left."""
    n_videos = len(created_s)
    members = np.flatnonzero(communities.of_video >= 0)
    members = members[np.lexsort((members, communities.of_video[members]))]  # by community, then age
    member_community = communities.of_video[members]
    member_key = member_community * n_videos + members
    weight = np.exp(communities.logit[members] - communities.logit[members].max())
    cum = np.concatenate([[0.0], np.cumsum(weight)])
    low = np.searchsorted(member_community, community, side="left")
    high = np.searchsorted(member_key, community * n_videos + available, side="left")

    video = np.full(len(user), -1, dtype=np.int64)
    taken = TakenKeys(np.empty(0, dtype=np.int64))
    pending = np.flatnonzero(high > low)
    for _ in range(_QUICK_ATTEMPTS):
        if len(pending) == 0:
            return video
        lo, hi = low[pending], high[pending]
        target = cum[lo] + rng.random(len(pending)) * (cum[hi] - cum[lo])
        choice = members[np.clip(np.searchsorted(cum, target, side="right") - 1, lo, hi - 1)]
        key = user[pending] * n_videos + choice
        accepted = first_occurrences(key) & ~taken.contains(key)
        video[pending[accepted]] = choice[accepted]
        taken.add(key[accepted])
        pending = pending[~accepted]
    # The few left have liked most of their community: draw among exactly what remains.
    for i in pending:
        span = np.arange(low[i], high[i])
        span = span[~taken.contains(user[i] * n_videos + members[span])]
        if len(span):
            w = np.cumsum(weight[span])
            video[i] = members[span[min(np.searchsorted(w, rng.random() * w[-1], side="right"), len(span) - 1)]]
            taken.add(np.array([user[i] * n_videos + video[i]]))
    return video


def _sample_by_taste(
    rng: np.random.Generator,
    catalogue: Catalogue,
    users: Users,
    like_user: np.ndarray,
    like_taste: np.ndarray,
    available: np.ndarray,
    taken_user: np.ndarray,
    taken_video: np.ndarray,
) -> np.ndarray:
    """A video per like ∝ exp(taste·vector + popularity − sensitivity · log price) among the videos
    created before it, never one the user already has (``taken_*``, or an earlier draw here).

    Videos are sorted by created_at, so "created before t" is a prefix, and one set of weights
    per user and taste serves every like. ``like_user`` must be sorted.
    """
    n_videos = len(catalogue.created_s)
    n_users = len(users.like_counts)
    # score = taste·vector + popularity − sensitivity·log(price) − bound, as one matrix
    # product. The bound (each part's largest possible value) keeps exp() from overflowing
    # without another pass over users × videos; padding videos up to whole blocks get -1e4.
    log_price = catalogue.log_relative_price
    padded = -(-n_videos // _SAMPLING_BLOCK) * _SAMPLING_BLOCK
    video_side = np.zeros((padded, LATENT_DIM + 3), dtype=np.float32)
    video_side[:n_videos, :LATENT_DIM] = catalogue.vectors
    video_side[:, LATENT_DIM] = -1e4
    video_side[:n_videos, LATENT_DIM] = catalogue.popularity
    video_side[:n_videos, LATENT_DIM + 1] = log_price
    video_side[:, LATENT_DIM + 2] = 1.0
    tastes = TASTE_SHARPNESS * np.stack([users.start_taste, users.end_taste], axis=1).reshape(-1, LATENT_DIM)
    sensitivity = np.repeat(users.price_sensitivity, 2)
    bound = (
        np.linalg.norm(tastes, axis=1) * np.linalg.norm(catalogue.vectors, axis=1).max()
        + catalogue.popularity.max()
        + sensitivity * np.abs(log_price).max()
    )
    user_side = np.column_stack([tastes, np.ones(len(tastes)), -sensitivity, -bound]).astype(np.float32)

    like_video = np.empty(len(like_user), dtype=np.int64)
    like_row = 2 * like_user + like_taste  # row of user_side: (user, start or end taste)
    taken_key = np.sort(taken_user * padded + taken_video)
    users_per_chunk = max(1, 8_000_000 // padded)
    for first in range(0, n_users, users_per_chunk):
        last = min(n_users, first + users_per_chunk)
        span = slice(*np.searchsorted(like_user, [first, last]))
        if span.start == span.stop:
            continue
        needed, row = np.unique(like_row[span], return_inverse=True)
        weights = user_side[needed] @ video_side.T
        np.exp(weights, out=weights)
        already = taken_key[slice(*np.searchsorted(taken_key, [first * padded, last * padded]))]
        like_video[span] = _sample_unliked(rng, weights, row, like_user[span], available[span], already)
    return like_video


def _sample_unliked(
    rng: np.random.Generator,
    weights: np.ndarray,
    row: np.ndarray,
    user: np.ndarray,
    available: np.ndarray,
    already: np.ndarray,
) -> np.ndarray:
    """Draw each like's video ∝ its row's weights over the first ``available`` videos,
    redrawing videos the user already has (``already``: user × padded videos + video).

    Two levels (a block of videos, then a video in it) instead of a cumulative sum over every
    video: summing blocks is several times cheaper, and only drawn blocks are expanded.
    """
    n_rows, padded = weights.shape
    blocks = weights.reshape(n_rows, padded // _SAMPLING_BLOCK, _SAMPLING_BLOCK)
    block_cum = np.zeros((n_rows, blocks.shape[1] + 1))
    np.cumsum(blocks.sum(axis=2), axis=1, out=block_cum[:, 1:])
    position = np.arange(_SAMPLING_BLOCK)
    full = available // _SAMPLING_BLOCK  # blocks that existed entirely before the like
    part = available % _SAMPLING_BLOCK  # videos of the next block that did
    full_mass = block_cum[row, full]
    tail = blocks[row, np.minimum(full, blocks.shape[1] - 1)]
    mass = full_mass + np.where(position < part[:, None], tail, 0.0).sum(axis=1, dtype=np.float64)
    if (mass <= 0).any():
        raise DemoDataError("a user's taste gives every available video zero weight")

    video = np.full(len(row), -1, dtype=np.int64)
    taken = TakenKeys(already)
    pending = np.arange(len(row))
    for attempt in range(200):
        if len(pending) == 0:
            return video
        r, u = row[pending], rng.random(len(pending))
        if attempt < 100:
            target = u * mass[pending]
            in_tail = (target >= full_mass[pending]) & (part[pending] > 0)
            block = np.where(in_tail, full[pending], _last_at_most(block_cum, r, target, full[pending]))
            limit = np.where(in_tail, part[pending], _SAMPLING_BLOCK)
            inside = blocks[r, np.minimum(block, blocks.shape[1] - 1)]
            inside = np.where(position < limit[:, None], inside, 0.0)
            residual = target - block_cum[r, block]
            step = (np.cumsum(inside, axis=1, dtype=np.float64) <= residual[:, None]).sum(axis=1)
            choice = block * _SAMPLING_BLOCK + np.minimum(step, limit - 1)
        else:  # a user who has nearly exhausted their taste: any unliked video will do
            choice = (u * available[pending]).astype(np.int64)
        key = user[pending] * padded + choice
        accepted = first_occurrences(key) & ~taken.contains(key)
        video[pending[accepted]] = choice[accepted]
        taken.add(key[accepted])
        pending = pending[~accepted]
    raise DemoDataError("could not find enough distinct videos for every user; ask for fewer likes")


def _last_at_most(cum: np.ndarray, row: np.ndarray, target: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per entry, the largest b < end with cum[row, b] <= target (a row-wise binary search)."""
    low, high = np.zeros_like(end), np.maximum(end, 1)
    while (high - low > 1).any():
        middle = (low + high) // 2
        go = cum[row, middle] <= target
        low, high = np.where(go, middle, low), np.where(go, high, middle)
    return low
