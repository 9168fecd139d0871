"""Item communities: groups of videos liked together for reasons genre and maker do not show.

Real likes have collaborative structure (fan groups, series, cult followings): people who liked
one video of a group like others of it, whatever its genre or maker. Without it, content explains
every like and a co-like model (ItemKNN, a learned item embedding) has nothing to add. So a
share of the videos belong to one of a few hundred communities; a community mixes genres and
makers (it leans a little towards two anchor genres, so content is a weak hint, not an answer);
within it, some videos are favourites, and not simply the catalogue's popular ones. Each user
follows a few communities, most of their weight on one or two, and spends a personal share of
their sessions in them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twotower_pipeline.demo_data.catalogue import GENRES, Catalogue
from twotower_pipeline.demo_data.draws import standardised, unit_rows
from twotower_pipeline.demo_data.size import DemoSize
from twotower_pipeline.demo_data.users import Users

MAX_COMMUNITIES = 400
VIDEOS_PER_COMMUNITY = 40
"""One community per this many videos (and per USERS_PER_COMMUNITY users, whichever gives fewer)."""
USERS_PER_COMMUNITY = 3
COMMUNITY_VIDEO_SHARE = 0.5
"""Share of the videos in some community; the others are liked only for their content."""
ANCHOR_GENRES = 2
ANCHOR_PULL = 4.0
"""A video of an anchor genre is this much likelier (plus one) to join the community."""
CORE_SPREAD = 0.7
"""Standard deviation of a video's standing within its community: its log-weight there is this
times a standard normal plus COMMUNITY_POPULARITY times its overall popularity, so each community
has favourites of its own, only loosely the videos everyone likes."""
COMMUNITY_POPULARITY = 0.2
COMMUNITY_SHARE_MEAN = 0.4
"""Mean share of a user's sessions spent in their communities (varies from user to user)."""
FOLLOW_TASTE_PULL = 0.7
"""How much a user's taste sways which communities they follow (log-odds per standard deviation)."""
LIKES_PER_EXTRA_COMMUNITY = 60
"""Heavy users follow one more community per this many community likes, so that few of them
run out of videos they have not liked in their communities."""
MAX_FOLLOWED = 24


@dataclass
class Communities:
    of_video: np.ndarray  # per video: community index, -1 for none
    logit: np.ndarray  # per video: log-weight of being picked within its community
    followed: np.ndarray  # [users, MAX_FOLLOWED]: community indices, -1 for unused slots
    follow_weight: np.ndarray  # [users, MAX_FOLLOWED]: share of community sessions, rows sum to 1
    share: np.ndarray  # per user: share of sessions spent in communities

    @classmethod
    def draw(cls, rng: np.random.Generator, size: DemoSize, catalogue: Catalogue, users: Users) -> Communities:
        n_videos, n_genres = size.videos, len(GENRES)
        n = community_count(size)

        # Communities: a size (how many videos and followers) and two anchor genres.
        weight = rng.lognormal(0.0, 0.5, size=n)
        genre_count = np.bincount(catalogue.genre_of_video, minlength=n_genres).astype(np.float64) + 1.0
        anchor_key = np.log(genre_count)[None, :] + rng.gumbel(size=(n, n_genres))
        anchors = np.argsort(-anchor_key, axis=1)[:, :ANCHOR_GENRES]
        anchored = np.zeros((n, n_genres), dtype=bool)
        anchored[np.arange(n)[:, None], anchors] = True

        # Videos: a share join one community, likelier one anchored in their genre.
        of_video = np.full(n_videos, -1, dtype=np.int64)
        joins = rng.random(n_videos) < COMMUNITY_VIDEO_SHARE
        pick = rng.random(n_videos)
        for genre in range(n_genres):
            videos = np.flatnonzero(joins & (catalogue.genre_of_video == genre))
            cum = np.cumsum(weight * (1.0 + ANCHOR_PULL * anchored[:, genre]))
            of_video[videos] = np.minimum(np.searchsorted(cum, pick[videos] * cum[-1], side="right"), n - 1)
        standing = COMMUNITY_POPULARITY * catalogue.popularity + CORE_SPREAD * rng.normal(size=n_videos)
        logit = np.where(of_video >= 0, standing, 0.0)

        # Users: a share of their sessions, and which communities they follow (bigger ones and
        # ones near their taste likelier), with most weight on one or two.
        share = rng.beta(4.0 * COMMUNITY_SHARE_MEAN, 4.0 * (1.0 - COMMUNITY_SHARE_MEAN), size=size.users)
        members = np.bincount(of_video[of_video >= 0], minlength=n)
        centre = np.zeros((n, catalogue.vectors.shape[1]))
        np.add.at(centre, of_video[of_video >= 0], catalogue.vectors[of_video >= 0])
        closeness = standardised(users.start_taste @ unit_rows(centre).T)
        key = (np.log(weight)[None, :] + np.where(members > 0, 0.0, -np.inf)[None, :]
               + FOLLOW_TASTE_PULL * closeness + rng.gumbel(size=(size.users, n)))
        order = np.argsort(-key, axis=1)[:, :MAX_FOLLOWED]
        how_many = 1 + rng.binomial(3, 0.5, size=size.users) + np.floor(
            share * users.like_counts / LIKES_PER_EXTRA_COMMUNITY).astype(np.int64)
        how_many = np.minimum(how_many, min(MAX_FOLLOWED, int((members > 0).sum())))
        slots = np.arange(order.shape[1])[None, :] < how_many[:, None]
        followed = np.full((size.users, MAX_FOLLOWED), -1, dtype=np.int64)
        followed[:, : order.shape[1]] = np.where(slots, order, -1)
        follow_weight = np.zeros((size.users, MAX_FOLLOWED))
        follow_weight[:, : order.shape[1]] = np.where(slots, rng.gamma(0.8, size=order.shape), 0.0)
        follow_weight /= np.maximum(follow_weight.sum(axis=1, keepdims=True), 1e-300)  # all zero: follows none
        return cls(of_video=of_video, logit=logit, followed=followed, follow_weight=follow_weight, share=share)


def community_count(size: DemoSize) -> int:
    return int(np.clip(min(size.videos // VIDEOS_PER_COMMUNITY, size.users // USERS_PER_COMMUNITY),
                       2, MAX_COMMUNITIES))
