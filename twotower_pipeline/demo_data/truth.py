"""The hidden truth behind the demo likes, and the oracle: the generator's own probability of
each next like.

A model's metrics mean little without a ceiling: the oracle says how well anything trained on
these likes could possibly rank, so a gap to it is room to improve and a tie with it is noise.
The truth keeps only values the generator already drew; keeping it draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from twotower_pipeline.demo_data.size import DemoDataError
from twotower_pipeline.demo_data.users import TASTE_SHARPNESS, end_taste_share

_ORACLE_CELLS = 2_000_000
"""Queries × videos scored at once by oracle_scores (a few arrays of this many float64s)."""


@dataclass(frozen=True, eq=False)
class DemoTruth:
    """The hidden values the likes were drawn from, users and videos in the generator's order.

    ``video_ids`` is in the videos frame's row order (oldest first); ``user_ids`` in the order
    the generator numbered users. A like of user u at time t is, with probability
    ``community_share[u]``, a community like: a community u follows, picked by
    ``follow_weight[u]``, then a video of it created before t ∝ exp(``community_logit``); else a
    taste like: the end taste with probability :meth:`end_taste_share` (else the start taste),
    then a video created before t ∝ exp(sharpness · taste·vector + popularity −
    price_sensitivity · log_relative_price). Videos the user already has are redrawn in the same
    mode; a community with none left hands the like to the taste mode. Likes come in sessions
    that mostly share one mode; each like on its own has the chances above.
    """

    user_ids: np.ndarray
    video_ids: np.ndarray
    start_taste: np.ndarray  # users × LATENT_DIM
    end_taste: np.ndarray  # users × LATENT_DIM
    drift_midpoint: np.ndarray  # per user, as a fraction of the like window
    drift_width: np.ndarray  # per user, as a fraction of the like window
    price_sensitivity: np.ndarray  # per user
    video_vectors: np.ndarray  # videos × LATENT_DIM
    popularity: np.ndarray  # per video, log-weight
    log_relative_price: np.ndarray  # per video, log(price / reference price)
    created_s: np.ndarray  # per video, epoch seconds (ascending)
    window_start_s: int
    window_s: int
    community_of_video: np.ndarray  # per video: community index, -1 for none
    community_logit: np.ndarray  # per video: log-weight within its community
    followed: np.ndarray  # users × slots: communities the user follows, -1 for unused slots
    follow_weight: np.ndarray  # users × slots: share of the user's community likes, rows sum to 1
    community_share: np.ndarray  # per user: chance that a like is a community like
    active_until_s: np.ndarray  # per user: planned end of activity (the window's end unless stopped)
    pause_s: np.ndarray  # users × 2: planned pause [start, end) in epoch seconds, -1 for none
    sharpness: float = TASTE_SHARPNESS

    @property
    def window_end_s(self) -> int:
        """``now`` of the generation, in epoch seconds."""
        return self.window_start_s + self.window_s

    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        return _rows_of(self.user_ids, user_ids, "user")

    def video_rows(self, video_ids: Sequence[str]) -> np.ndarray:
        return _rows_of(self.video_ids, video_ids, "video")

    def end_taste_share(self, user_rows: np.ndarray, at_seconds: np.ndarray) -> np.ndarray:
        """Probability that a taste like of each user at each time was drawn from the end taste."""
        progress = (np.asarray(at_seconds, dtype=np.float64) - self.window_start_s) / self.window_s
        return end_taste_share(progress, self.drift_midpoint[user_rows], self.drift_width[user_rows])

    def stopped_user_ids(self, days: float = 60.0) -> np.ndarray:
        """Users planned to stop at least ``days`` before the window's end (their likes stop then)."""
        return self.user_ids[self.active_until_s <= self.window_end_s - days * 86_400]

    def paused_user_ids(self) -> np.ndarray:
        """Users planned to pause for weeks and come back (some of them stop later)."""
        return self.user_ids[self.pause_s[:, 0] >= 0]


def _rows_of(known: np.ndarray | pd.Index, wanted: Sequence[str], what: str) -> np.ndarray:
    rows = pd.Index(known).get_indexer(pd.Index(np.asarray(wanted, dtype=object)))
    if (rows < 0).any():
        missing = np.asarray(wanted, dtype=object)[rows < 0][:3]
        raise DemoDataError(f"unknown {what} id(s) {', '.join(map(str, missing))} (not in this demo data)")
    return rows


def oracle_scores(
    truth: DemoTruth,
    user_ids: Sequence[str],
    at_seconds: Sequence[float] | np.ndarray,
    candidate_video_ids: Sequence[str],
    exclude: Sequence[Sequence[str]] | None = None,
) -> np.ndarray:
    """log P(next like = video | user, time) under the generator, [queries, candidates], float64.

    Query i is (``user_ids[i]``, ``at_seconds[i]``). With ρ the user's community share, w_c the
    user's follow weights, p the end-taste share at t and each P a *normalised* softmax over the
    videos available at t (created before t, not excluded):

        P(v) = ρ · Σ_c w_c · P_c(v) + τ · ((1 − p) · P_start(v) + p · P_end(v)),
        τ = 1 − ρ + ρ · Σ_{c with nothing left} w_c

    where P_c is over the community's videos ∝ exp(community logit) and P_start / P_end over all
    videos ∝ exp(sharpness · taste·vector + popularity − sensitivity · log relative price). This
    returns log P(v), exact, not up to a constant. Mixing normalised softmaxes (not raw
    numerators, which would weight each part by its normaliser; not a geometric mixture, which
    would rank a video one part loves below what the generator does) is what the generator does.

    The oracle does not know the like's session: a session mostly stays in one mode, so a model
    that sees the user's last few likes can beat it on likes right after them. It is the ceiling
    for a like whose session is unknown.

    Videos created at or after t get -inf. ``exclude`` (per query, video ids the user already
    liked) also gets -inf and leaves every normaliser, as the generator redraws (in the same
    mode) a video the user already has. Without it the scores sum (as probabilities) to 1 over
    the available catalogue. Work is chunked so memory stays at a few ``_ORACLE_CELLS`` arrays
    plus the [queries, candidates] result.
    """
    users = truth.user_rows(user_ids)
    at = np.asarray(at_seconds, dtype=np.float64).reshape(-1)
    if len(at) != len(users):
        raise DemoDataError(f"{len(users)} users but {len(at)} times")
    if exclude is not None and len(exclude) != len(users):
        raise DemoDataError(f"{len(users)} users but {len(exclude)} exclude lists")
    candidates = truth.video_rows(candidate_video_ids)
    video_index = pd.Index(truth.video_ids)
    n_videos = len(truth.video_ids)
    available = np.searchsorted(truth.created_s, at, side="left")  # videos created strictly before t
    end_share = truth.end_taste_share(users, at)
    # a_taste = [sharpness · taste, 1, −sensitivity] · [vector, popularity, log relative price]
    video_side = np.column_stack([truth.video_vectors, truth.popularity, truth.log_relative_price])
    column = np.arange(n_videos)
    # Communities: each video's weight within its community, and video → community as a matrix;
    # videos in none point at an extra community whose factor is always 0.
    community = truth.community_of_video
    in_community = community >= 0
    n_communities = int(community.max()) + 1 if in_community.any() else 0
    top = truth.community_logit[in_community].max() if in_community.any() else 0.0
    community_weight = np.where(in_community, np.exp(truth.community_logit - top), 0.0)
    membership = sp.csr_matrix(
        (np.ones(in_community.sum()), (np.flatnonzero(in_community), community[in_community])),
        shape=(n_videos, n_communities),
    )
    video_community = np.where(in_community, community, n_communities)

    out = np.empty((len(users), len(candidates)), dtype=np.float64)
    step = max(1, _ORACLE_CELLS // max(n_videos, 1))
    # Probabilities, not logs, until the end: every part is a few exp() of values within a few
    # dozen of each row's peak, far from underflow, and one log at the end is much cheaper than
    # a logaddexp per part.
    with np.errstate(divide="ignore", invalid="ignore"):
        for first in range(0, len(users), step):
            span = slice(first, min(first + step, len(users)))
            u = users[span]
            rows = np.arange(len(u))
            allowed = column[None, :] < available[span, None]
            if exclude is not None:
                lists = exclude[span]
                liked = _rows_of(video_index, [v for x in lists for v in x], "video")
                allowed[np.repeat(rows, [len(x) for x in lists]), liked] = False

            # Community part: P_c over each community's open videos, weighted by ρ · w_c.
            open_weight = community_weight[None, :] * allowed
            z = np.asarray((membership.T @ open_weight.T).T)  # [queries, communities]
            follows = np.zeros((len(u), n_communities))  # [queries, communities]: the user's w_c
            slots = truth.followed[u] >= 0
            np.add.at(follows, (np.broadcast_to(rows[:, None], slots.shape)[slots], truth.followed[u][slots]),
                      truth.follow_weight[u][slots])
            share = truth.community_share[u]
            # Weight of communities with nothing left for the user (and of none: a user who
            # follows nothing has every like led by taste) goes to the taste part.
            dry = (follows * (z <= 0)).sum(axis=1) + np.maximum(1.0 - follows.sum(axis=1), 0.0)
            factor = np.zeros((len(u), n_communities + 1))
            factor[:, :n_communities] = np.where(z > 0, share[:, None] * follows / z, 0.0)
            total = open_weight
            total *= factor[:, video_community]

            # Taste part: the start and end tastes' softmaxes over the open videos.
            taste_weight = 1.0 - share + share * dry
            for vectors, weight in ((truth.start_taste, 1.0 - end_share[span]), (truth.end_taste, end_share[span])):
                user_side = np.column_stack(
                    [truth.sharpness * vectors[u], np.ones(len(u)), -truth.price_sensitivity[u]]
                )
                a = user_side @ video_side.T
                a -= a.max(axis=1, keepdims=True)
                np.exp(a, out=a)
                a *= allowed
                norm = a.sum(axis=1)
                a *= np.where(norm > 0, taste_weight * weight / norm, 0.0)[:, None]  # nothing open yet: 0
                total += a
            out[span] = np.log(total[:, candidates])
    return out
