"""What ``recommend_videos`` serves, computed in memory from what the database holds at a moment.

Publishing writes exactly these values to pgvector (item vectors, user vectors, the cold-start
lists) and evaluation ranks with them, so the number in a run's report is the number users get:

- item vectors: every catalogue video's inputs as of the moment of embedding (its popularity in
  the 30 days before, its age then);
- user vectors: every user with at least one like gets a vector from their newest likes, of any
  age (the training window bounds training, not who is served), with the like ages measured from
  the user's newest like, so the vector is the same whether it is computed the day after that
  like or two months later;
- users without likes get the popular videos of their demographic segment (age range, region),
  else the popular videos overall; popularity is a like count decayed with a 30-day half-life, so
  the list is never empty, nor arbitrary, because the last 30 days happened to be quiet;
- a user's liked videos (all of them) are never recommended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from twotower_pipeline.model.dataset import UserSequences
from twotower_pipeline.model.evaluation import HoldoutUsers, ScoreChunk
from twotower_pipeline.model.features import (
    POPULARITY_WINDOW_DAYS,
    SECONDS_PER_DAY,
    ColdStart,
    Demographics,
    FeatureSpec,
    HistoryTables,
    epoch_seconds,
    item_features,
    latest_histories,
    popularity_shares,
)

POPULARITY_HORIZON_DAYS = 183  # likes older than this do not count towards popularity
SEGMENT_LIST_LENGTH = 200  # videos kept per demographic segment; the overall order follows them
UNKNOWN = ""  # segment key of a missing age range or region

# How popular videos are counted for users without likes is chosen per training, on the newest
# users of the training data (see tune_cold_start): the half-life of a like's weight, and how many
# likes of the whole app a demographic segment's own likes weigh against (inf: no segments, the
# overall order for everyone).
HALF_LIFE_CHOICES_DAYS = (14.0, 7.0, 30.0)  # on a tie the earlier choice stays: the default first,
SEGMENT_PRIOR_CHOICES = (None, 2_000.0, 200.0, 20.0)  # and segments only where they do better
COLD_START_VALIDATION_DAYS = 28
MIN_VALIDATION_NEWCOMERS = 20

Embed = Callable[[dict[str, np.ndarray]], np.ndarray]

SERVED_BY_VECTOR = "vector"
SERVED_BY_SEGMENT = "segment popularity"
SERVED_BY_POPULARITY = "overall popularity"


def attach_catalogue_rows(catalogue: pd.DataFrame, likes: pd.DataFrame) -> pd.DataFrame:
    """likes with a ``row`` column (position of the video in the catalogue); unknown videos dropped."""
    position = pd.Series(np.arange(len(catalogue)), index=catalogue["id"].to_numpy())
    rows = likes["video_id"].map(position)
    out = likes[rows.notna()].copy()
    out["row"] = rows[rows.notna()].astype(np.int64).to_numpy()
    return out


@dataclass(frozen=True, eq=False)
class Snapshot:
    """What the app's database holds at ``as_of``: the clean catalogue (ordered by id, as
    ``read_catalogue`` returns it), the clean likes with their catalogue ``row`` and the profiles."""

    catalogue: pd.DataFrame
    likes: pd.DataFrame
    profiles: pd.DataFrame
    as_of: pd.Timestamp

    @classmethod
    def of(cls, catalogue: pd.DataFrame, likes: pd.DataFrame, profiles: pd.DataFrame | None,
           as_of: object) -> Snapshot:
        catalogue = catalogue.reset_index(drop=True)
        if profiles is None:
            profiles = pd.DataFrame({"user_id": pd.Series(dtype=object), "age_range": pd.Series(dtype=object),
                                     "region": pd.Series(dtype=object)})
        if "row" not in likes.columns:
            likes = attach_catalogue_rows(catalogue, likes)
        return cls(catalogue, likes, profiles, pd.Timestamp(as_of))

    def sequences(self) -> UserSequences:
        return UserSequences.from_likes(self.likes)


# -- items -----------------------------------------------------------------------------------
def item_inputs(spec: FeatureSpec, catalogue: pd.DataFrame, likes: pd.DataFrame, as_of: object) -> dict[str, np.ndarray]:
    """Item-tower inputs of the ``catalogue`` videos as of ``as_of``; ``likes`` are the likes of every
    catalogue video (a shard's videos' popularity is their share of all likes)."""
    shares = popularity_inputs(likes, as_of)
    return item_features(spec, catalogue, shares_of(shares, catalogue["id"]), pd.Timestamp(as_of))


def popularity_inputs(likes: pd.DataFrame, as_of: object) -> pd.Series:
    """The popularity input at ``as_of`` of every video with a like in the window before it (video id
    -> its share of the window's likes); every other video's is 0. Computed once for a catalogue
    read in chunks."""
    as_of = pd.Timestamp(as_of)
    recent = likes[(likes["created_at"] >= as_of - pd.Timedelta(days=POPULARITY_WINDOW_DAYS))
                   & (likes["created_at"] < as_of)]
    liked = pd.Series(recent["video_id"].unique())
    return pd.Series(popularity_shares(liked, recent, as_of), index=liked.to_numpy())


def shares_of(shares: pd.Series, video_ids: pd.Series) -> np.ndarray:
    """The popularity inputs of ``video_ids`` from :func:`popularity_inputs`."""
    return video_ids.map(shares).fillna(0.0).to_numpy(dtype=np.float64)


def decayed_like_weights(likes: pd.DataFrame, as_of: pd.Timestamp, half_life_days: float) -> np.ndarray:
    """Each like's weight in popularity: 1/2 per half-life of age, 0 beyond the horizon."""
    age = (as_of.value / 1e9 - epoch_seconds(likes["created_at"])) / SECONDS_PER_DAY
    return np.where((age >= 0) & (age <= POPULARITY_HORIZON_DAYS),
                    0.5 ** (np.maximum(age, 0) / half_life_days), 0.0)


def video_popularity(video_ids: pd.Series, likes: pd.DataFrame, as_of: object, half_life_days: float) -> np.ndarray:
    """Each video's popularity for the cold-start order (aligned with ``video_ids``): its likes,
    decayed. What publishing stores; what popular_videos ranks by. In float32, as the database
    keeps it, so both order (and break ties by video id) alike."""
    weights = decayed_like_weights(likes, pd.Timestamp(as_of), half_life_days)
    totals = pd.Series(weights, index=likes["video_id"].to_numpy()).groupby(level=0).sum()
    return video_ids.map(totals).fillna(0.0).to_numpy(dtype=np.float32)


@dataclass(frozen=True)
class PopularVideos:
    """The cold-start lists of one moment: every video's popularity, and the best videos of each
    demographic segment (age range, region; UNKNOWN where the profile lacks one)."""

    scores: np.ndarray  # per catalogue row
    segments: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # rows, best first
    segment_scores: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def overall_order(self) -> np.ndarray:
        """Catalogue rows by popularity, ties by row (the catalogue is ordered by id, as SQL ties are)."""
        return np.lexsort((np.arange(len(self.scores)), -self.scores))

    def segment_of(self, age_range: object, region: object) -> tuple[str, str] | None:
        key = (_key(age_range), _key(region))
        return key if key in self.segments else None


def _key(value: object) -> str:
    return value if isinstance(value, str) else UNKNOWN


def popular_videos(snapshot: Snapshot, cold_start: ColdStart = ColdStart()) -> PopularVideos:
    """Decayed like counts overall and per segment. A segment's counts are shrunk towards its
    parents' (age range and region, each shrunk towards the overall) by ``segment_prior_likes``,
    so a small segment gets nearly the overall list and a large one its own taste."""
    n_items = len(snapshot.catalogue)
    likes = snapshot.likes
    weights = decayed_like_weights(likes, snapshot.as_of, cold_start.half_life_days)
    keep = weights > 0
    likes, weights = likes[keep], weights[keep]
    rows = likes["row"].to_numpy(dtype=np.int64)
    scores = video_popularity(snapshot.catalogue["id"], likes, snapshot.as_of, cold_start.half_life_days)
    if len(weights):
        weights = weights / weights.mean()  # in "likes": a segment's evidence weighs against the prior's
    profiles = snapshot.profiles.drop_duplicates("user_id")
    wanted = {(_key(a), _key(r)) for a, r in zip(profiles["age_range"], profiles["region"])} - {(UNKNOWN, UNKNOWN)}
    prior_likes = cold_start.segment_prior_likes
    if not wanted or not len(weights) or prior_likes is None:
        return PopularVideos(scores)
    liked = np.flatnonzero(scores > 0)
    overall = scores[liked].astype(np.float64) / scores.sum(dtype=np.float64)
    indexed = profiles.set_index("user_id")
    ages = likes["user_id"].map(indexed["age_range"]).map(_key).to_numpy()
    regions = likes["user_id"].map(indexed["region"]).map(_key).to_numpy()
    position = np.full(n_items, -1, dtype=np.int64)
    position[liked] = np.arange(len(liked))
    liked_position = position[rows]

    def shrunk(mask: np.ndarray, prior: np.ndarray) -> np.ndarray:
        counts = np.bincount(liked_position[mask], weights=weights[mask], minlength=len(liked))
        return (counts + prior_likes * prior) / (counts.sum() + prior_likes)

    by_age = {a: shrunk(ages == a, overall) for a, _ in wanted if a != UNKNOWN}
    by_region = {r: shrunk(regions == r, overall) for _, r in wanted if r != UNKNOWN}
    segments, segment_scores = {}, {}
    for a, r in sorted(wanted):
        if a != UNKNOWN and r != UNKNOWN:
            share = shrunk((ages == a) & (regions == r), (by_age[a] + by_region[r]) / 2)
        else:
            share = by_age[a] if a != UNKNOWN else by_region[r]
        top = np.lexsort((liked, -share))[:SEGMENT_LIST_LENGTH]
        segments[(a, r)] = liked[top]
        segment_scores[(a, r)] = share[top]
    return PopularVideos(scores, segments, segment_scores)


def cold_start_order(popular: PopularVideos, age_range: object, region: object) -> np.ndarray:
    """Catalogue rows in the order a user without likes is served them (before their exclusions)."""
    overall = popular.overall_order()
    segment = popular.segment_of(age_range, region)
    if segment is None:
        return overall
    listed = popular.segments[segment]
    return np.concatenate([listed, overall[~np.isin(overall, listed)]])


def tune_cold_start(snapshot: Snapshot, k: int = 50) -> tuple[ColdStart, dict[str, float]]:
    """Choose how popular videos are counted for users without likes, by how well each choice would
    have served the newest users of the snapshot: the lists as of COLD_START_VALIDATION_DAYS ago,
    scored (Recall@k) on what the users who arrived since liked. Few newcomers: the defaults."""
    start = snapshot.as_of - pd.Timedelta(days=COLD_START_VALIDATION_DAYS)
    first_like = snapshot.likes.groupby("user_id")["created_at"].min()
    newcomers = first_like.index[first_like >= start]
    if len(newcomers) < MIN_VALIDATION_NEWCOMERS:
        return ColdStart(), {}
    past = Snapshot(snapshot.catalogue, snapshot.likes[snapshot.likes["created_at"] < start],
                    snapshot.profiles, start)
    liked = snapshot.likes[snapshot.likes["user_id"].isin(newcomers)].groupby("user_id")["row"]
    profiles = snapshot.profiles.drop_duplicates("user_id").set_index("user_id")
    scores: dict[str, float] = {}
    best, best_recall = ColdStart(), -1.0
    for half_life in HALF_LIFE_CHOICES_DAYS:
        for prior in SEGMENT_PRIOR_CHOICES:
            choice = ColdStart(half_life, prior)
            popular = popular_videos(past, choice)
            recalls = []
            for user, rows in liked:
                order = cold_start_order(popular, profiles["age_range"].get(user), profiles["region"].get(user))
                recalls.append(np.isin(rows.to_numpy(), order[:k]).mean())
            recall = float(np.mean(recalls))
            scores[f"half_life_{half_life:g}_segments_{'none' if prior is None else format(prior, 'g')}"] = recall
            if recall > best_recall + 1e-9:
                best, best_recall = choice, recall
    return best, scores


# -- users -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserHistories:
    """The served users' inputs: every user of the snapshot with at least one like."""

    user_ids: np.ndarray
    inputs: dict[str, np.ndarray]
    likes_until: list[pd.Timestamp]  # the newest like each vector covers


def user_histories(spec: FeatureSpec, snapshot: Snapshot, tables: HistoryTables | None = None,
                   only_users: set[str] | None = None) -> UserHistories:
    """User-tower inputs of every user with likes (or of ``only_users`` among them)."""
    tables = tables or HistoryTables.from_catalogue(spec, snapshot.catalogue)
    likes = snapshot.likes if only_users is None else snapshot.likes[snapshot.likes["user_id"].isin(only_users)]
    sequences = UserSequences.from_likes(likes)
    rows, ages = latest_histories(sequences.rows, sequences.times, None, tables.pad_row, spec.history_length)
    demographics = Demographics.lookup(spec, sequences.user_ids, snapshot.profiles)
    newest = [pd.Timestamp(times[-1] * 1e9, unit="ns", tz="UTC") for times in sequences.times]
    return UserHistories(sequences.user_ids, tables.user_inputs(rows, ages, demographics), newest)


# -- the ranking -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ServedRanking:
    """How each query user is served, and a score function whose top K (after dropping the user's
    liked videos) is what recommend_videos returns."""

    user_ids: np.ndarray
    served_by: np.ndarray  # SERVED_BY_* per user
    scores: ScoreChunk
    seen: list[np.ndarray]  # catalogue rows each user liked: never recommended

    def shares(self) -> dict[str, float]:
        """The share of the users served each way."""
        n = max(len(self.served_by), 1)
        return {way: float((self.served_by == way).sum()) / n
                for way in (SERVED_BY_VECTOR, SERVED_BY_SEGMENT, SERVED_BY_POPULARITY)}

    def holdout(self, relevant: list[np.ndarray]) -> HoldoutUsers:
        return HoldoutUsers(self.seen, relevant)


def served_ranking(snapshot: Snapshot, spec: FeatureSpec, embed_users: Embed, embed_items: Embed,
                   user_ids: np.ndarray, popular: PopularVideos | None = None,
                   item_vectors: np.ndarray | None = None) -> ServedRanking:
    """recommend_videos for ``user_ids`` on the snapshot, with one version's towers."""
    user_ids = np.asarray(user_ids, dtype=object)
    if item_vectors is None:
        item_vectors = embed_items(item_inputs(spec, snapshot.catalogue, snapshot.likes, snapshot.as_of))
    histories = user_histories(spec, snapshot, only_users=set(user_ids))
    vectors = embed_users(histories.inputs) if len(histories.user_ids) else np.zeros((0, item_vectors.shape[1]))
    vector_of = {user: i for i, user in enumerate(histories.user_ids)}
    liked = snapshot.likes[snapshot.likes["user_id"].isin(set(user_ids))].groupby("user_id")["row"]
    liked_rows = {user: rows.to_numpy(dtype=np.int64) for user, rows in liked}
    seen = [liked_rows.get(user, np.zeros(0, dtype=np.int64)) for user in user_ids]
    n_items = len(snapshot.catalogue)
    segments: list[tuple[str, str] | None] = [None] * len(user_ids)
    served_by = np.full(len(user_ids), SERVED_BY_VECTOR, dtype=object)
    cold = [u for u, user in enumerate(user_ids) if user not in vector_of]
    overall_rank_score = np.zeros(n_items, dtype=np.float32)
    if cold:  # the cold-start lists are only worked out when someone needs them
        popular = popular or popular_videos(snapshot, spec.cold_start)
        profiles = snapshot.profiles.drop_duplicates("user_id").set_index("user_id")
        for u in cold:
            user = user_ids[u]
            if user in profiles.index:
                segments[u] = popular.segment_of(profiles["age_range"].get(user), profiles["region"].get(user))
            served_by[u] = SERVED_BY_SEGMENT if segments[u] is not None else SERVED_BY_POPULARITY
        # Popularity as a score: the overall order below every segment list's position.
        overall_rank_score[popular.overall_order()] = (-np.arange(n_items, dtype=np.float32)
                                                       - SEGMENT_LIST_LENGTH - 1)

    def scores(users: slice) -> np.ndarray:
        out = np.empty((len(user_ids[users]), n_items), dtype=np.float32)
        for i, u in enumerate(range(*users.indices(len(user_ids)))):
            if served_by[u] == SERVED_BY_VECTOR:
                out[i] = item_vectors @ vectors[vector_of[user_ids[u]]]
            else:
                out[i] = overall_rank_score
                if segments[u] is not None:
                    listed = popular.segments[segments[u]]
                    out[i, listed] = -np.arange(len(listed), dtype=np.float32)
        return out

    return ServedRanking(user_ids, served_by, scores, seen)
