"""Feature preparation for both towers, fitted once per training and exported with the model.

Everything a tower sees is derived here from the catalogue and the likes. The same
:class:`FeatureSpec` (saved as JSON next to the ONNX files) is used for training, evaluation,
batch embedding and by the Edge Function, so all of them apply exactly the same transformation.
Unknown ids and new vocabulary map to the out-of-vocabulary index, never to an error.

Every time-dependent input has one definition, evaluated at the same kind of moment in training
and in serving, so a request weeks after a user's last like sees values training saw:

- a user's like ages are measured from the user's own newest like in the history (not from the
  request, nor from the like being predicted): they describe the history, whenever it is read;
- a video's popularity and age are as of a moment: the example's time in training (never
  counting the example's own like), the moment of embedding in serving. Popularity is the
  video's share of the last 30 days' likes, so it means the same whether the app has a quiet or
  a busy month and whether or not some likes are held out for evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

PAD = 0
OOV = 1
FIRST_INDEX = 2

HISTORY_LENGTH = 100
MAX_PERFORMERS = 8
MAX_TAGS = 16
TEXT_TERMS = 32
POPULARITY_WINDOW_DAYS = 30
POPULARITY_PER = 10_000.0  # popularity input: likes of the video per 10,000 likes of the window
SECONDS_PER_DAY = 86_400.0

ITEM_INPUTS = (
    "video_idx", "genre_idx", "maker_idx", "performer_idx", "tag_idx", "text_idx", "text_weight", "numeric",
)
USER_INPUTS = ("hist_video_idx", "hist_genre_idx", "hist_maker_idx", "hist_price", "hist_age_days",
               "user_age_range_idx", "user_region_idx")
NUMERIC_FEATURES = ("price", "duration", "popularity", "age")


@dataclass(frozen=True)
class FeatureConfig:
    max_videos: int = 100_000
    max_makers: int = 5_000
    max_performers: int = 20_000
    max_tags: int = 5_000
    text_vocabulary: int = 5_000
    min_text_df: int = 2


@dataclass(frozen=True)
class ColdStart:
    """How popular videos are counted for users without likes: the half-life of a like's weight,
    and how many likes of the whole app a demographic segment's own likes weigh against (None: no
    segments, the overall order for everyone)."""

    half_life_days: float = 14.0
    segment_prior_likes: float | None = 200.0


@dataclass
class Vocabulary:
    """String -> index; 0 is padding, 1 is out-of-vocabulary, known tokens start at 2."""

    tokens: list[str]
    _index: dict[str, int] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self._index = {token: i + FIRST_INDEX for i, token in enumerate(self.tokens)}

    @property
    def size(self) -> int:
        return len(self.tokens) + FIRST_INDEX

    def lookup(self, values: Iterable[object]) -> np.ndarray:
        index = self._index
        return np.fromiter((index.get(v, OOV) if isinstance(v, str) else OOV for v in values), dtype=np.int64)

    @classmethod
    def by_frequency(cls, values: pd.Series, limit: int) -> Vocabulary:
        counts = values.dropna().astype(str).value_counts()
        # Ties broken by token so the vocabulary does not depend on row order.
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([token for token, _ in ordered[:limit]])


@dataclass(frozen=True)
class LogNormaliser:
    """z-score of log1p(x); missing or negative values become 0 (the training mean)."""

    mean: float
    std: float

    def apply(self, values: np.ndarray | pd.Series) -> np.ndarray:
        raw = np.asarray(values, dtype=np.float64)
        valid = np.isfinite(raw) & (raw >= 0)
        out = np.zeros(raw.shape, dtype=np.float32)
        out[valid] = ((np.log1p(raw[valid]) - self.mean) / self.std).astype(np.float32)
        return np.clip(out, -8.0, 8.0)

    @classmethod
    def fit(cls, values: np.ndarray | pd.Series) -> LogNormaliser:
        raw = np.asarray(values, dtype=np.float64)
        logged = np.log1p(raw[np.isfinite(raw) & (raw >= 0)])
        if logged.size == 0:
            return cls(0.0, 1.0)
        return cls(float(logged.mean()), float(max(logged.std(), 1e-3)))


@dataclass
class FeatureSpec:
    videos: Vocabulary
    genres: Vocabulary
    makers: Vocabulary
    performers: Vocabulary
    tags: Vocabulary
    text_terms: list[str]
    text_idf: list[float]
    price: LogNormaliser
    duration: LogNormaliser
    popularity: LogNormaliser
    age: LogNormaliser
    reference_time: str
    history_length: int = HISTORY_LENGTH
    age_ranges: Vocabulary = field(default_factory=lambda: Vocabulary([]))
    regions: Vocabulary = field(default_factory=lambda: Vocabulary([]))
    # How users without likes are served, chosen at training time (serving_path.tune_cold_start).
    popularity_half_life_days: float = 14.0
    segment_prior_likes: float | None = 200.0

    @property
    def cold_start(self) -> ColdStart:
        return ColdStart(self.popularity_half_life_days, self.segment_prior_likes)

    # -- text ------------------------------------------------------------------------
    def text_vectorizer(self) -> TfidfVectorizer:
        vectorizer = TfidfVectorizer(
            vocabulary={term: i for i, term in enumerate(self.text_terms)}, sublinear_tf=True, dtype=np.float32
        )
        vectorizer.idf_ = np.asarray(self.text_idf, dtype=np.float64)
        return vectorizer

    @property
    def text_size(self) -> int:
        # Text term j is embedded at index j + FIRST_INDEX, so 0 stays padding.
        return len(self.text_terms) + FIRST_INDEX

    # -- persistence -----------------------------------------------------------------
    def to_json(self) -> str:
        payload = {
            name: (value.tokens if isinstance(value, Vocabulary) else asdict(value))
            if isinstance(value, (Vocabulary, LogNormaliser))
            else value
            for name, value in self.__dict__.items()
        }
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        payload = json.loads(text)
        kwargs: dict[str, object] = {}
        for name, value in payload.items():
            if name in ("videos", "genres", "makers", "performers", "tags", "age_ranges", "regions"):
                kwargs[name] = Vocabulary(list(value))
            elif name in ("price", "duration", "popularity", "age"):
                kwargs[name] = LogNormaliser(**value)
            else:
                kwargs[name] = value
        return cls(**kwargs)  # type: ignore[arg-type]

    def save(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> FeatureSpec:
        return cls.from_json(path.read_text(encoding="utf-8"))


def catalogue_text(catalogue: pd.DataFrame) -> pd.Series:
    return catalogue["title"].fillna("").astype(str) + " " + catalogue["description"].fillna("").astype(str)


def fit_feature_spec(
    catalogue: pd.DataFrame,
    train_likes: pd.DataFrame,
    reference_time: datetime,
    config: FeatureConfig = FeatureConfig(),
    profiles: pd.DataFrame | None = None,
    popularity_values: np.ndarray | None = None,
    age_values: np.ndarray | None = None,
) -> FeatureSpec:
    """Fit vocabularies and normalisers. The video vocabulary comes from the training likes; the
    popularity and age normalisers from the values the training examples see (``*_values``; by
    default the catalogue's at ``reference_time``); text, categories and prices from the catalogue."""
    profiles = empty_profiles() if profiles is None else profiles
    performers = catalogue["performers"].explode()
    tags = catalogue["tags"].explode()
    text = catalogue_text(catalogue)
    terms: list[str] = []
    idf: list[float] = []
    if text.str.strip().str.len().gt(0).sum() >= config.min_text_df:
        vectorizer = TfidfVectorizer(
            max_features=config.text_vocabulary, min_df=config.min_text_df, sublinear_tf=True, dtype=np.float32
        )
        try:
            vectorizer.fit(text)
            terms = [str(t) for t in vectorizer.get_feature_names_out()]
            idf = [float(x) for x in vectorizer.idf_]
        except ValueError:  # nothing but stop words or single-use words: no text feature
            terms, idf = [], []
    if popularity_values is None:
        popularity_values = popularity_shares(catalogue["id"], train_likes, reference_time)
    if age_values is None:
        age_values = age_days(catalogue["created_at"], reference_time)
    return FeatureSpec(
        videos=Vocabulary.by_frequency(train_likes["video_id"], config.max_videos),
        genres=Vocabulary.by_frequency(catalogue["genre"], 10_000),
        makers=Vocabulary.by_frequency(catalogue["maker"], config.max_makers),
        performers=Vocabulary.by_frequency(performers, config.max_performers),
        tags=Vocabulary.by_frequency(tags, config.max_tags),
        text_terms=terms,
        text_idf=idf,
        price=LogNormaliser.fit(catalogue["price"]),
        duration=LogNormaliser.fit(catalogue["duration_seconds"]),
        popularity=LogNormaliser.fit(popularity_values),
        age=LogNormaliser.fit(age_values),
        reference_time=pd.Timestamp(reference_time).isoformat(),
        age_ranges=Vocabulary.by_frequency(profiles["age_range"], 100),
        regions=Vocabulary.by_frequency(profiles["region"], 1_000),
    )


def empty_profiles() -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.Series(dtype=object), "age_range": pd.Series(dtype=object),
                         "region": pd.Series(dtype=object)})


@dataclass(frozen=True)
class Demographics:
    """Per-user demographic indices (out-of-vocabulary where a user has no profile)."""

    age_range_idx: np.ndarray
    region_idx: np.ndarray

    @classmethod
    def lookup(cls, spec: FeatureSpec, user_ids: np.ndarray, profiles: pd.DataFrame | None) -> Demographics:
        if profiles is None or profiles.empty:
            unknown = np.full(len(user_ids), OOV, dtype=np.int64)
            return cls(unknown, unknown.copy())
        indexed = profiles.drop_duplicates("user_id").set_index("user_id")
        users = pd.Index(user_ids)
        return cls(
            spec.age_ranges.lookup(indexed["age_range"].reindex(users)),
            spec.regions.lookup(indexed["region"].reindex(users)),
        )

    def take(self, users: np.ndarray) -> Demographics:
        return Demographics(self.age_range_idx[users], self.region_idx[users])


class PopularityIndex:
    """Likes per video in the POPULARITY_WINDOW_DAYS before any moment, from one set of likes.

    ``shares(rows, times)`` is the popularity input of video ``rows[i]`` at ``times[i]``: its likes
    in [t - 30 days, t) per POPULARITY_PER likes of all videos in that window. The interval is open
    at t, so a training example's own like is never counted.
    """

    _TIME_BITS = 38  # milliseconds since the oldest like: 8.7 years; the row goes above them

    def __init__(self, rows: np.ndarray, seconds: np.ndarray) -> None:
        self._base = (float(seconds.min()) if len(seconds) else 0.0) - 2 * POPULARITY_WINDOW_DAYS * SECONDS_PER_DAY
        self._keys = np.sort(self._key(np.asarray(rows, dtype=np.int64), seconds))
        self._all = np.sort(self._millis(seconds))

    def _millis(self, seconds: np.ndarray) -> np.ndarray:
        millis = np.floor((np.asarray(seconds, dtype=np.float64) - self._base) * 1000.0)
        return np.clip(millis, 0, 2**self._TIME_BITS - 1).astype(np.int64)

    def _key(self, rows: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        return (np.asarray(rows, dtype=np.int64) << self._TIME_BITS) | self._millis(seconds)

    @classmethod
    def from_likes(cls, likes: pd.DataFrame) -> PopularityIndex:
        """``likes`` with a ``row`` column (catalogue position) and ``created_at``."""
        return cls(likes["row"].to_numpy(dtype=np.int64), epoch_seconds(likes["created_at"]))

    def counts(self, rows: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        end = np.searchsorted(self._keys, self._key(rows, seconds), side="left")
        start = np.searchsorted(self._keys, self._key(rows, seconds - POPULARITY_WINDOW_DAYS * SECONDS_PER_DAY),
                                side="left")
        return (end - start).astype(np.float64)

    def totals(self, seconds: np.ndarray) -> np.ndarray:
        end = np.searchsorted(self._all, self._millis(seconds), side="left")
        start = np.searchsorted(self._all, self._millis(seconds - POPULARITY_WINDOW_DAYS * SECONDS_PER_DAY),
                                side="left")
        return (end - start).astype(np.float64)

    def shares(self, rows: np.ndarray, seconds: np.ndarray | float) -> np.ndarray:
        seconds = np.broadcast_to(np.asarray(seconds, dtype=np.float64), np.shape(rows))
        return POPULARITY_PER * self.counts(rows, seconds) / np.maximum(self.totals(seconds), 1.0)


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    return pd.to_datetime(timestamps, utc=True).astype("int64").to_numpy() / 1e9


def popularity_shares(video_ids: pd.Series, likes: pd.DataFrame, reference_time: datetime) -> np.ndarray:
    """The popularity input of each of ``video_ids`` at ``reference_time``. ``likes`` are all the
    likes to count (those of videos not in ``video_ids`` count in the total only)."""
    position = pd.Series(np.arange(len(video_ids)), index=video_ids.to_numpy())
    rows = likes["video_id"].map(position).fillna(len(video_ids)).to_numpy(dtype=np.int64)
    index = PopularityIndex(rows, epoch_seconds(likes["created_at"]))
    return index.shares(np.arange(len(video_ids)), pd.Timestamp(reference_time).value / 1e9)


def age_days(created_at: pd.Series, reference_time: datetime | np.ndarray) -> np.ndarray:
    """Days from each video's creation to the reference moment(s), never negative."""
    created = epoch_seconds(created_at)
    reference = (np.asarray(reference_time, dtype=np.float64) if isinstance(reference_time, np.ndarray)
                 else pd.Timestamp(reference_time).value / 1e9)
    delta = np.nan_to_num(reference - created, nan=0.0)
    return np.clip(delta / SECONDS_PER_DAY, 0, None)


def _padded_lookup(lists: pd.Series, vocabulary: Vocabulary, width: int) -> np.ndarray:
    """Vocabulary indices of each row's list, front-aligned and zero-padded to ``width``."""
    out = np.zeros((len(lists), width), dtype=np.int64)
    lengths = lists.map(lambda v: len(v) if isinstance(v, (list, tuple, np.ndarray)) else 0).to_numpy()
    if lengths.sum() == 0:
        return out
    rows = np.repeat(np.arange(len(lists)), lengths)
    values = [value for v, n in zip(lists, lengths) if n for value in v]
    position = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = position < width
    out[rows[keep], position[keep]] = vocabulary.lookup(np.asarray(values, dtype=object)[keep])
    return out


def _text_terms(spec: FeatureSpec, catalogue: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each video's TEXT_TERMS highest-weighted TF-IDF terms (index, weight), zero-padded."""
    n = len(catalogue)
    idx = np.zeros((n, TEXT_TERMS), dtype=np.int64)
    weight = np.zeros((n, TEXT_TERMS), dtype=np.float32)
    if not spec.text_terms or n == 0:
        return idx, weight
    matrix = spec.text_vectorizer().transform(catalogue_text(catalogue)).tocsr()
    matrix.sort_indices()
    rows = np.repeat(np.arange(n), np.diff(matrix.indptr))
    order = np.lexsort((-matrix.data, rows))  # by row, then by weight (descending); stable
    rows = rows[order]
    rank = np.arange(len(order)) - matrix.indptr[rows]
    keep = rank < TEXT_TERMS
    idx[rows[keep], rank[keep]] = matrix.indices[order][keep] + FIRST_INDEX
    weight[rows[keep], rank[keep]] = matrix.data[order][keep]
    return idx, weight


def numeric_inputs(spec: FeatureSpec, catalogue: pd.DataFrame, rows: np.ndarray, popularity: np.ndarray,
                   age: np.ndarray) -> np.ndarray:
    """The item tower's numeric input of catalogue ``rows`` with the given popularity inputs and ages."""
    return np.stack(
        [
            spec.price.apply(catalogue["price"].to_numpy()[rows]),
            spec.duration.apply(catalogue["duration_seconds"].to_numpy()[rows]),
            spec.popularity.apply(popularity),
            spec.age.apply(age),
        ],
        axis=1,
    ).astype(np.float32)


def item_features(
    spec: FeatureSpec, catalogue: pd.DataFrame, popularity: np.ndarray, reference_time: datetime
) -> dict[str, np.ndarray]:
    """Item-tower inputs for every catalogue row, in catalogue order, as of ``reference_time``
    (``popularity``: each video's popularity input then, see :func:`popularity_shares`)."""
    text_idx, text_weight = _text_terms(spec, catalogue)
    rows = np.arange(len(catalogue))
    return {
        "video_idx": spec.videos.lookup(catalogue["id"]),
        "genre_idx": spec.genres.lookup(catalogue["genre"]),
        "maker_idx": spec.makers.lookup(catalogue["maker"]),
        "performer_idx": _padded_lookup(catalogue["performers"], spec.performers, MAX_PERFORMERS),
        "tag_idx": _padded_lookup(catalogue["tags"], spec.tags, MAX_TAGS),
        "text_idx": text_idx,
        "text_weight": text_weight,
        "numeric": numeric_inputs(spec, catalogue, rows, popularity, age_days(catalogue["created_at"], reference_time)),
    }


@dataclass(frozen=True)
class HistoryTables:
    """Per-catalogue-row values a liked video contributes to a user's history.

    Row ``len(catalogue)`` is the padding row, so history row indices can be padded with it.
    """

    video_idx: np.ndarray
    genre_idx: np.ndarray
    maker_idx: np.ndarray
    price: np.ndarray

    @property
    def pad_row(self) -> int:
        return len(self.video_idx) - 1

    @classmethod
    def from_catalogue(cls, spec: FeatureSpec, catalogue: pd.DataFrame) -> HistoryTables:
        def padded(values: np.ndarray) -> np.ndarray:
            return np.concatenate([values, np.zeros(1, dtype=values.dtype)])

        return cls(
            video_idx=padded(spec.videos.lookup(catalogue["id"])),
            genre_idx=padded(spec.genres.lookup(catalogue["genre"])),
            maker_idx=padded(spec.makers.lookup(catalogue["maker"])),
            price=padded(spec.price.apply(catalogue["price"])),
        )

    def user_inputs(
        self, rows: np.ndarray, age_days: np.ndarray, demographics: Demographics | None = None
    ) -> dict[str, np.ndarray]:
        """User-tower inputs from history rows [B, H] (padded with pad_row), like ages [B, H] and
        the users' demographics (unknown when not given)."""
        if demographics is None:
            unknown = np.full(len(rows), OOV, dtype=np.int64)
            demographics = Demographics(unknown, unknown)
        return {
            "user_age_range_idx": demographics.age_range_idx,
            "user_region_idx": demographics.region_idx,
            "hist_video_idx": self.video_idx[rows],
            "hist_genre_idx": self.genre_idx[rows],
            "hist_maker_idx": self.maker_idx[rows],
            "hist_price": self.price[rows].astype(np.float32),
            "hist_age_days": np.where(rows == self.pad_row, 0.0, age_days).astype(np.float32),
        }


def latest_histories(
    user_rows: list[np.ndarray],
    user_times: list[np.ndarray],
    before: np.ndarray | None,
    pad_row: int,
    length: int = HISTORY_LENGTH,
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's most recent ``length`` likes (before ``before[u]``, epoch seconds, where given),
    newest last, and their ages in days measured from the newest of them.

    user_rows/user_times: per user, catalogue rows and like times (epoch seconds), sorted by time.
    Returns history rows [U, length] (padded at the front with pad_row) and ages (0 for padding).
    The ages do not depend on when the history is read: a user who paused for weeks gets the
    inputs they would have got the day after their last like, as training examples do.
    """
    rows = np.full((len(user_rows), length), pad_row, dtype=np.int64)
    ages = np.zeros((len(user_rows), length), dtype=np.float32)
    for u, (r, t) in enumerate(zip(user_rows, user_times)):
        end = len(t) if before is None else int(np.searchsorted(t, before[u], side="left"))
        start = max(0, end - length)
        take = end - start
        if take:
            rows[u, length - take:] = r[start:end]
            ages[u, length - take:] = (t[end - 1] - t[start:end]) / SECONDS_PER_DAY
    return rows, ages
