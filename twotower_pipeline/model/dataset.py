"""Time-based holdout and training examples.

Each user's most recent likes are held out for evaluation; everything the model, its
vocabularies and its popularity feature learn from comes strictly from before them. A
training example is "the user's previous likes (up to 100, newest last) -> the next like",
which is exactly what serving asks of the model: the next videos after a user's history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from twotower_pipeline.model.features import HISTORY_LENGTH, SECONDS_PER_DAY

LIKES_WINDOW_DAYS = 183  # training examples: likes of the last six months (design document)


@dataclass(frozen=True)
class HoldoutConfig:
    # The newest 10% of each user's likes: enough held-out likes to compare models, while the
    # model that goes live learns from 90% (on MovieLens, 20% cost 0.01 of served Recall@50).
    holdout_fraction: float = 0.1
    min_likes_for_holdout: int = 5


@dataclass(frozen=True)
class TemporalSplit:
    """likes frames carry user_id, video_id, created_at and ``row`` (catalogue row index)."""

    train: pd.DataFrame
    test: pd.DataFrame

    @property
    def train_end(self) -> pd.Timestamp:
        return self.train["created_at"].max()


def temporal_holdout(likes: pd.DataFrame, config: HoldoutConfig = HoldoutConfig()) -> TemporalSplit:
    """Hold out the last ``holdout_fraction`` of each user's likes (users with enough likes)."""
    ordered = likes.sort_values(["user_id", "created_at", "video_id"], kind="stable").reset_index(drop=True)
    position = ordered.groupby("user_id").cumcount()
    count = ordered.groupby("user_id")["video_id"].transform("size")
    held = np.where(
        count >= config.min_likes_for_holdout,
        np.maximum(1, np.floor(count * config.holdout_fraction)).astype(int),
        0,
    )
    is_test = position >= (count - held)
    return TemporalSplit(train=ordered[~is_test].reset_index(drop=True), test=ordered[is_test].reset_index(drop=True))


@dataclass(frozen=True)
class UserSequences:
    """Per-user catalogue rows and like times (epoch seconds), sorted by time."""

    user_ids: np.ndarray
    rows: list[np.ndarray]
    times: list[np.ndarray]

    @classmethod
    def from_likes(cls, likes: pd.DataFrame) -> UserSequences:
        ordered = likes.sort_values(["user_id", "created_at", "video_id"], kind="stable")
        seconds = ordered["created_at"].astype("int64").to_numpy() / 1e9
        users = ordered["user_id"].to_numpy()
        rows = ordered["row"].to_numpy(dtype=np.int64)
        boundaries = np.flatnonzero(users[1:] != users[:-1]) + 1 if len(users) else np.array([], dtype=int)
        starts = np.concatenate([[0], boundaries]) if len(users) else np.array([], dtype=int)
        ends = np.concatenate([boundaries, [len(users)]]) if len(users) else np.array([], dtype=int)
        return cls(
            user_ids=users[starts] if len(users) else np.array([], dtype=object),
            rows=[rows[s:e] for s, e in zip(starts, ends)],
            times=[seconds[s:e] for s, e in zip(starts, ends)],
        )


@dataclass(frozen=True)
class Examples:
    """history rows [N, H] (front-padded with pad_row), ages in days [N, H] (from the newest like of
    the history), positive rows [N], the time of each positive (epoch seconds), the index of each
    example's user in its UserSequences, and whether it is that user's last."""

    history_rows: np.ndarray
    history_age_days: np.ndarray
    positive_rows: np.ndarray
    positive_times: np.ndarray
    users: np.ndarray
    positions: np.ndarray  # of the positive in its user's sequence
    is_last: np.ndarray

    def __len__(self) -> int:
        return len(self.positive_rows)

    def subset(self, mask: np.ndarray) -> Examples:
        return Examples(self.history_rows[mask], self.history_age_days[mask], self.positive_rows[mask],
                        self.positive_times[mask], self.users[mask], self.positions[mask], self.is_last[mask])


def next_like_examples(sequences: UserSequences, pad_row: int, length: int = HISTORY_LENGTH,
                       first_target_time: float | None = None) -> Examples:
    """One example per like that has at least one earlier like of the same user (and, when
    ``first_target_time`` is given, is not older than it: the training window bounds the
    examples, not the histories, which reach back as far as serving's do).

    The history's ages are measured from its newest like, exactly as :func:`latest_histories`
    measures them when a user is served: the gap before the next like is never an input.
    """
    histories, ages, positives, times, users, positions, is_last = [], [], [], [], [], [], []
    for user, (rows, seconds) in enumerate(zip(sequences.rows, sequences.times)):
        n = len(rows)
        if n < 2:
            continue
        first = 1 if first_target_time is None else max(1, int(np.searchsorted(seconds, first_target_time, "left")))
        if first >= n:
            continue
        padded_rows = np.concatenate([np.full(length, pad_row, dtype=np.int64), rows])
        padded_times = np.concatenate([np.full(length, np.nan), seconds])
        # Window i covers the `length` likes before like i (like i is at padded index length + i).
        windows = np.lib.stride_tricks.sliding_window_view(padded_rows, length)[first:n]
        time_windows = np.lib.stride_tricks.sliding_window_view(padded_times, length)[first:n]
        newest = seconds[first - 1:n - 1, None]
        age = np.where(np.isnan(time_windows), 0.0, (newest - np.nan_to_num(time_windows)) / SECONDS_PER_DAY)
        histories.append(windows)
        ages.append(age.astype(np.float32))
        positives.append(rows[first:n])
        times.append(seconds[first:n])
        users.append(np.full(n - first, user, dtype=np.int64))
        positions.append(np.arange(first, n, dtype=np.int64))
        last = np.zeros(n - first, dtype=bool)
        last[-1] = True
        is_last.append(last)
    if not positives:
        return Examples(np.zeros((0, length), dtype=np.int64), np.zeros((0, length), dtype=np.float32),
                        np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64),
                        np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    return Examples(np.concatenate(histories), np.concatenate(ages), np.concatenate(positives),
                    np.concatenate(times), np.concatenate(users), np.concatenate(positions), np.concatenate(is_last))
