"""When users like: sessions, pauses and users who stop.

Real likes come in bursts (a handful within minutes or an hour, then nothing for days), and real
users pause for weeks or leave. A generator where every user likes at uniform random times up to
the day of the run hides two kinds of bug: features measured "since the last like" from the run
time instead of from the moment of each training example, and models that ignore what the user
did minutes ago. So each user's likes are grouped into sessions placed regularly (with jitter)
over the time the user is active; a share of users pause for several weeks and come back; a share
stop at least ``STOPPED_DAYS`` before ``now`` (some of them after a pause they came back from).

:func:`activity_summary` finds these users in any likes frame (demo or real), and
``DemoTruth.pause_s`` / ``DemoTruth.active_until_s`` say what the generator planned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from twotower_pipeline.demo_data.draws import draw_within_groups
from twotower_pipeline.demo_data.size import LIKE_WINDOW

DAY_S = 86_400
PAUSING_SHARE = 0.18
"""Users who pause for PAUSE_DAYS and come back (not counting stopped users who paused first)."""
PAUSE_DAYS = (28.0, 63.0)
STOPPED_SHARE = 0.10
"""Users whose last like is at least STOPPED_DAYS before now."""
STOPPED_DAYS = 60.0
STOPPED_EXTRA_DAYS = 50.0
"""Stopped users stop between STOPPED_DAYS and STOPPED_DAYS + this many days before now."""
STOPPED_AFTER_PAUSE_SHARE = 0.4
"""Share of the stopped users who had paused (for PAUSE_DAYS) and come back before stopping."""
MARGIN_DAYS = 10.0
"""A pause leaves at least this many active days on either side."""
SESSION_GAP_S = (20, 8 * 60, 30 * 60)
"""Between two likes of a session: at least, mean extra (exponential), at most (seconds)."""
MAX_SESSION_S = 4 * 3600
"""Longer sessions have their gaps shrunk to fit."""
SESSION_BREAK_S = 2 * 3600
"""Likes further apart than this are in different sessions, as activity_summary counts them."""


@dataclass
class Activity:
    """Per like (grouped by user, sessions consecutive): its time and session; per session: its
    user and start; per user: the planned end of activity and pause."""

    like_s: np.ndarray
    like_session: np.ndarray
    session_user: np.ndarray
    session_start_s: np.ndarray
    active_until_s: np.ndarray  # per user, epoch seconds: now for users who did not stop
    pause_s: np.ndarray  # per user: [start, end) of the planned pause, -1 for none

    @classmethod
    def draw(cls, rng: np.random.Generator, like_counts: np.ndarray, now_s: int) -> Activity:
        n_users = len(like_counts)
        start_s = now_s - int(LIKE_WINDOW.total_seconds())
        segments, active_until_s, pause_s = _active_segments(rng, n_users, start_s, now_s)

        # Sessions: a few likes each, more for heavy users; at least one per active segment.
        mean_likes = (1.2 + np.sqrt(like_counts) / 4.0) * rng.lognormal(0.0, 0.3, size=n_users)
        n_segments = (segments[:, :, 1] > segments[:, :, 0]).sum(axis=1)
        n_sessions = np.clip(np.round(like_counts / np.maximum(mean_likes, 1.0)).astype(np.int64),
                             n_segments, like_counts)
        session_user = np.repeat(np.arange(n_users), n_sessions)
        first_session = np.concatenate([[0], np.cumsum(n_sessions)[:-1]])
        session_rank = np.arange(len(session_user)) - first_session[session_user]

        # Each user's first n_sessions likes open one session each; the rest join one ∝ a
        # gamma weight, so session sizes vary (many small, a few long binges).
        like_user = np.repeat(np.arange(n_users), like_counts)
        first_like = np.concatenate([[0], np.cumsum(like_counts)[:-1]])
        like_rank = np.arange(len(like_user)) - first_like[like_user]
        opener = like_rank < n_sessions[like_user]
        like_session = np.empty(len(like_user), dtype=np.int64)
        like_session[opener] = first_session[like_user[opener]] + like_rank[opener]
        like_session[~opener] = draw_within_groups(
            rng, session_user, rng.gamma(1.0, size=len(session_user)), like_user[~opener]
        )
        like_session.sort(kind="stable")  # keep likes grouped by user, sessions consecutive

        # Within a session: the first like at its start, then gaps of minutes.
        session_size = np.bincount(like_session, minlength=len(session_user))
        first_in_session = np.concatenate([[0], np.cumsum(session_size)[:-1]])
        low, mean_extra, high = SESSION_GAP_S
        gap = np.minimum(low + rng.exponential(mean_extra, size=len(like_session)), high)
        gap[first_in_session] = 0.0
        offset = np.cumsum(gap) - np.repeat(np.cumsum(gap)[first_in_session], session_size)
        length = np.zeros(len(session_user))
        np.maximum.at(length, like_session, offset)
        squeeze = np.minimum(1.0, MAX_SESSION_S / np.maximum(length, 1.0))
        offset = np.floor(offset * squeeze[like_session])
        offset += np.arange(len(offset)) - first_in_session[like_session]  # distinct seconds

        # Session starts: the first n_segments sessions one in each active segment, the others on a
        # jittered grid over the active time, so gaps between sessions are regular (days, for a
        # typical user) and a planned pause stands out.
        session_start_s = _session_starts(rng, segments, session_user, session_rank, n_sessions, n_segments)
        like_s = _distinct_per_user(session_start_s[like_session] + offset.astype(np.int64), like_user)
        return cls(like_s=like_s, like_session=like_session, session_user=session_user,
                   session_start_s=session_start_s, active_until_s=active_until_s, pause_s=pause_s)


def _active_segments(
    rng: np.random.Generator, n_users: int, start_s: int, now_s: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, up to two active segments [users, 2, (start, end)] (an empty second one for users
    without a pause), the planned end of activity and the pause [users, 2] (-1 for none).

    The segments end MAX_SESSION_S (and an hour) early so a session started in one ends in it too."""
    kind = rng.random(n_users)
    stops = kind < STOPPED_SHARE
    pauses = (kind >= STOPPED_SHARE) & (kind < STOPPED_SHARE + PAUSING_SHARE)
    pauses |= stops & (rng.random(n_users) < STOPPED_AFTER_PAUSE_SHARE)

    until = np.full(n_users, float(now_s - 1))
    until[stops] = now_s - DAY_S * (STOPPED_DAYS + STOPPED_EXTRA_DAYS * rng.random(stops.sum()))
    margin = DAY_S * MARGIN_DAYS
    # Stopped users have less time: their pause is shortened to leave a margin on both sides.
    pause_length = np.minimum(DAY_S * rng.uniform(*PAUSE_DAYS, size=n_users), until - start_s - 3 * margin)
    room = np.maximum(until - start_s - pause_length - 2 * margin, 0.0)
    pause_from = start_s + margin + room * rng.random(n_users)
    pause_to = pause_from + pause_length

    segments = np.zeros((n_users, 2, 2))
    segments[:, 0, 0] = start_s
    slack = MAX_SESSION_S + 3600  # the hour: one second per like of a session to keep times distinct
    segments[:, 0, 1] = np.where(pauses, pause_from, until) - slack
    segments[:, 1, 0] = np.where(pauses, pause_to, 0.0)
    segments[:, 1, 1] = np.where(pauses, until - slack, 0.0)
    pause_s = np.where(pauses[:, None], np.column_stack([pause_from, pause_to]), -1.0).astype(np.int64)
    return segments, until.astype(np.int64), pause_s


def _session_starts(
    rng: np.random.Generator,
    segments: np.ndarray,
    session_user: np.ndarray,
    session_rank: np.ndarray,
    n_sessions: np.ndarray,
    n_segments: np.ndarray,
) -> np.ndarray:
    lengths = np.maximum(segments[:, :, 1] - segments[:, :, 0], 0.0)  # [users, 2]
    active = lengths.sum(axis=1)
    user = session_user
    forced = session_rank < n_segments[user]
    # Forced: uniformly within segment number `rank`; others: the k-th of n jittered grid slots
    # over the whole active time, mapped back to a clock time by skipping the pause.
    grid_slots = np.maximum(n_sessions - n_segments, 1)[user]
    grid_rank = session_rank - n_segments[user]
    u = rng.random(len(user))
    x = np.where(forced, 0.0, (grid_rank + u) / grid_slots * active[user])
    segment = np.where(forced, session_rank, (x >= lengths[user, 0]).astype(np.int64))
    segment = np.minimum(segment, 1)
    within = np.where(forced, u * lengths[user, segment], x - np.where(segment == 1, lengths[user, 0], 0.0))
    within = np.clip(within, 0.0, lengths[user, segment])
    return (segments[user, segment, 0] + within).astype(np.int64)


def _distinct_per_user(like_s: np.ndarray, like_user: np.ndarray) -> np.ndarray:
    """The times with any of a user's likes that share a second moved a second or two later, so
    "the user's previous like" is always defined (two sessions can, rarely, start together)."""
    order = np.lexsort((like_s, like_user))
    counts = np.bincount(like_user)
    rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    # t' = rank + running max of (t - rank) within the user; the user offset keeps users apart.
    offset = like_user[order].astype(np.int64) * (4 * int(LIKE_WINDOW.total_seconds()))
    lifted = np.maximum.accumulate(like_s[order] - rank + offset) - offset + rank
    out = np.empty_like(like_s)
    out[order] = lifted
    return out


def activity_summary(likes: pd.DataFrame, now: datetime | pd.Timestamp) -> pd.DataFrame:
    """Per user of a likes frame (``user_id``, ``created_at``): ``likes``, ``first_like``,
    ``last_like``, ``days_since_last_like`` (to ``now``), ``longest_gap_days`` between consecutive
    likes with the like that ended it (``back_after_gap_at``; NaT for a user with one like), and
    ``typical_gap_days``, the median gap between sessions (likes more than SESSION_BREAK_S apart;
    NaN for a user with one session).

    Users who stopped: ``days_since_last_like >= 60``. Users who paused and came back:
    ``longest_gap_days >= 28`` (light users have gaps that long anyway; add ``longest_gap_days >=
    3 * typical_gap_days`` for a break unusual for the user). Both (came back, then stopped): the
    conditions together.
    """
    ordered = likes[["user_id", "created_at"]].sort_values(["user_id", "created_at"], kind="stable")
    ordered = ordered.assign(gap=ordered.groupby("user_id")["created_at"].diff())
    between_sessions = ordered["gap"] > pd.Timedelta(seconds=SESSION_BREAK_S)
    by_user = ordered.groupby("user_id")["created_at"]
    summary = pd.DataFrame({"likes": by_user.size(), "first_like": by_user.min(), "last_like": by_user.max()})
    summary["days_since_last_like"] = (pd.Timestamp(now) - summary["last_like"]).dt.total_seconds() / DAY_S
    longest = (ordered.dropna(subset=["gap"]).sort_values("gap", kind="stable")
               .drop_duplicates("user_id", keep="last").set_index("user_id"))
    summary["longest_gap_days"] = (longest["gap"].dt.total_seconds() / DAY_S).reindex(summary.index).fillna(0.0)
    summary["back_after_gap_at"] = longest["created_at"].reindex(summary.index)
    typical = ordered["gap"][between_sessions].groupby(ordered["user_id"][between_sessions]).median()
    summary["typical_gap_days"] = (typical.dt.total_seconds() / DAY_S).reindex(summary.index)
    return summary
