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

Names and text are normalised by one rule before anything else (:func:`normalise_text`): the
catalogue's genres, makers, performers and tags (and the profiles' age ranges and regions) enter
their vocabularies normalised, and every lookup normalises its input, so 「ＶＯＬ．２」 and
「Vol.2」, 「ｶﾀｶﾅ」 and 「カタカナ」 are one entry. The Edge Functions apply the same rule to
the names they look up (supabase/functions/_shared/features.ts, ``normaliseName``). Titles and
descriptions are normalised the same way and then cut into terms that work for Japanese and
English in one catalogue (:func:`text_terms`): words for Latin-script and other spaced text,
overlapping character pairs for runs of kana and kanji, which have no spaces between words.

What a vocabulary and what the text input are fitted on: the video vocabulary, and the popularity
and age normalisers, from the training likes only; the genre, maker, performer, tag and text
vocabularies (with the text's idf) and the price and duration normalisers from the catalogue as it
is at the run (content, which every video has whether or not anyone liked it; no like of the
holdout reaches them).

A feature spec written before names were normalised (no ``name_normalisation`` in its JSON) keeps
its exact-match lookups and scikit-learn's default text tokens, so older versions serve and are
re-scored exactly as they were trained.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
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
MAX_TEXT_CHARS = 20_000  # title + description; longer text is truncated (validation counts it)

# -- one normalisation for every name and text -------------------------------------------------------
# The rule, applied identically here and in the Edge Functions (features.ts, normaliseName):
#   1. invisible format characters are removed: zero-width spaces and joiners, bidirectional
#      controls, the soft hyphen, the byte-order mark, variation selectors (standard and
#      ideographic: 「葛󠄀」 is 「葛」), tag characters;
#   2. control characters (C0, DEL, C1) and the line/paragraph separators become spaces;
#   3. Unicode NFKC (full-width ASCII and half-width katakana to their usual forms, 「㈱」 to
#      「(株)」, a kana and its separate voicing mark to one kana), then lower case (Unicode's full
#      mapping: Python's str.lower, JavaScript's toLowerCase, which agree on every character of
#      Python's Unicode database), then NFKC again (so the result is stable);
#   4. runs of spaces become one space; leading and trailing spaces are dropped.
# Lower case rather than Python's casefold, which JavaScript lacks: "Straße" and "STRASSE" stay
# two names ("straße", "strasse") on both sides rather than one name here and two there.
NAME_NORMALISATION = "nfkc-lower-1"
LEGACY_NAME_NORMALISATION = "none"  # specs written before normalisation: exact match
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufe00-\ufe0f\ufeff"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(" {2,}")


def normalise_text(value: str) -> str:
    """The one normalisation of every name and text (see above): 「ＶＯＬ．２」 -> "vol.2",
    「ｶﾀｶﾅ」 -> 「カタカナ」, "Drama" -> "drama"."""
    text = _nfkc(_nfkc(_CONTROL.sub(" ", _INVISIBLE.sub("", value))).lower())
    return _SPACES.sub(" ", text).strip(" ")


def _nfkc(text: str) -> str:
    # The quick check first: most text (all ASCII, most kana and kanji) is already NFKC.
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


normalise_name = normalise_text
"""Names (genres, makers, performers, tags, age ranges, regions) follow exactly the text rule."""

# -- text terms -----------------------------------------------------------------------------------
# Japanese writes words without spaces, so a "word" of scikit-learn's default pattern is a whole
# phrase (「東京の夜景を楽しむ大人の旅」 would be one term that no other title shares). Runs of
# kana and kanji are cut into overlapping pairs of characters instead (「東京の夜景」 -> 東京, 京の,
# の夜, 夜景; a lone character is a term of its own); everything else is cut into words as before:
# runs of letters, digits, underscores and combining marks, at least two characters long. On
# ASCII text the terms are exactly scikit-learn's default ones, lower case.
TEXT_TOKENIZER = "nfkc-lower-cjk-bigram-1"
LEGACY_TEXT_TOKENIZER = "sklearn-default"
CJK_CHARACTERS = ("\u3005-\u3007\u3040-\u309f\u30a0-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
                  "\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f")
"""Kana (not the middle dot ・, which separates), kanji and 々〆〇, as a regular-expression class body."""


@functools.cache
def combining_marks() -> str:
    """The combining marks (Unicode categories Mn, Mc, Me) of the Basic Multilingual Plane, as a
    regular-expression class body (kept to that plane, a class is one table lookup; the marks of
    the other planes belong to historic scripts)."""
    ranges, start = [], None
    for cp in range(0x10001):
        is_mark = cp < 0x10000 and unicodedata.category(chr(cp)).startswith("M")
        if is_mark and start is None:
            start = cp
        elif not is_mark and start is not None:
            ranges.append(f"\\u{start:04x}-\\u{cp - 1:04x}")
            start = None
    return "".join(ranges)


@functools.cache
def _term_pattern() -> re.Pattern[str]:
    """Kana/kanji runs, and word runs with the combining marks inside them (Python's \\w has no
    marks, so a word of a script that writes vowels as marks, or 「café」 typed with a separate
    accent, would fall apart)."""
    word = f"[^\\W{CJK_CHARACTERS}]"
    return re.compile(f"([{CJK_CHARACTERS}]+)|({word}+(?:[{combining_marks()}]+{word}*)*)")


def text_terms(text: str) -> list[str]:
    """The terms of one title + description, after :func:`normalise_text`."""
    terms: list[str] = []
    for cjk, word in _term_pattern().findall(normalise_text(text[:MAX_TEXT_CHARS])[:MAX_TEXT_CHARS]):
        if word:
            if len(word) >= 2:
                terms.append(word)
        elif len(cjk) == 1:
            terms.append(cjk)
        else:
            terms += [a + b for a, b in zip(cjk, cjk[1:])]
    return terms


TEXT_TOKENIZERS: dict[str, Callable[[str], list[str]] | None] = {
    TEXT_TOKENIZER: text_terms,
    LEGACY_TEXT_TOKENIZER: None,  # TfidfVectorizer's own default analyzer (lower case, \b\w\w+\b)
}
"""Tokenizer name (stored in the spec) -> analyzer; a spec names the one it was fitted with."""


@dataclass(frozen=True)
class FeatureConfig:
    max_videos: int = 100_000
    max_makers: int = 5_000
    max_performers: int = 20_000
    max_tags: int = 5_000
    text_vocabulary: int = 5_000
    min_text_df: int = 2
    text_tokenizer: str = TEXT_TOKENIZER  # a key of TEXT_TOKENIZERS


@dataclass(frozen=True)
class ColdStart:
    """How popular videos are counted for users without likes: the half-life of a like's weight,
    and how many likes of the whole app a demographic segment's own likes weigh against (None: no
    segments, the overall order for everyone)."""

    half_life_days: float = 14.0
    segment_prior_likes: float | None = 200.0


@dataclass
class Vocabulary:
    """String -> index; 0 is padding, 1 is out-of-vocabulary, known tokens start at 2.

    With ``normalised`` (every name vocabulary of a current spec), the tokens are stored
    normalised (:func:`normalise_name`) and every looked-up value is normalised first, so the
    variants of one name are one entry. Without it (video ids, and specs written before names
    were normalised), values match tokens exactly.
    """

    tokens: list[str]
    normalised: bool = False
    _index: dict[str, int] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self._index = {token: i + FIRST_INDEX for i, token in enumerate(self.tokens)}

    @property
    def size(self) -> int:
        return len(self.tokens) + FIRST_INDEX

    def lookup(self, values: Iterable[object]) -> np.ndarray:
        index = self._index
        if not self.normalised:
            return np.fromiter((index.get(v, OOV) if isinstance(v, str) else OOV for v in values), dtype=np.int64)
        # Each distinct value is normalised once: a catalogue repeats its genres and makers.
        array = values.to_numpy(dtype=object) if isinstance(values, (pd.Series, pd.Index)) else np.asarray(
            values if isinstance(values, np.ndarray) else list(values), dtype=object)
        codes, uniques = pd.factorize(array.ravel(), use_na_sentinel=True)
        table = np.fromiter((index.get(normalise_name(u), OOV) if isinstance(u, str) else OOV for u in uniques),
                            dtype=np.int64, count=len(uniques))
        return np.where(codes >= 0, table[np.maximum(codes, 0)] if len(table) else OOV, OOV).astype(np.int64)

    @classmethod
    def by_frequency(cls, values: pd.Series, limit: int, normalised: bool = False) -> Vocabulary:
        values = values.dropna().astype(str)
        if normalised:
            values = values.map(normalise_name)
            values = values[values != ""]
        counts = values.value_counts()
        # Ties broken by token so the vocabulary does not depend on row order.
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([token for token, _ in ordered[:limit]], normalised)


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
    # How names are matched and text is cut into terms. A spec without them (written before they
    # existed) means exact names and scikit-learn's default terms, as it was trained with.
    name_normalisation: str = LEGACY_NAME_NORMALISATION
    text_tokenizer: str = LEGACY_TEXT_TOKENIZER

    def __post_init__(self) -> None:
        if self.name_normalisation not in (NAME_NORMALISATION, LEGACY_NAME_NORMALISATION):
            raise ValueError(f"feature spec: unknown name_normalisation {self.name_normalisation!r} (this code "
                             f"knows {NAME_NORMALISATION!r} and {LEGACY_NAME_NORMALISATION!r}): a newer spec?")
        if self.text_tokenizer not in TEXT_TOKENIZERS:
            raise ValueError(f"feature spec: unknown text_tokenizer {self.text_tokenizer!r} (this code knows "
                             f"{', '.join(map(repr, TEXT_TOKENIZERS))}): a newer spec?")
        normalised = self.name_normalisation == NAME_NORMALISATION
        for vocabulary in self.name_vocabularies():
            vocabulary.normalised = normalised

    def name_vocabularies(self) -> tuple[Vocabulary, ...]:
        """The vocabularies of names (normalised in a current spec); not the video ids."""
        return (self.genres, self.makers, self.performers, self.tags, self.age_ranges, self.regions)

    @property
    def cold_start(self) -> ColdStart:
        return ColdStart(self.popularity_half_life_days, self.segment_prior_likes)

    # -- text ------------------------------------------------------------------------
    def text_vectorizer(self) -> TfidfVectorizer:
        analyzer = TEXT_TOKENIZERS[self.text_tokenizer]
        vectorizer = TfidfVectorizer(
            vocabulary={term: i for i, term in enumerate(self.text_terms)}, sublinear_tf=True, dtype=np.float32,
            **({} if analyzer is None else {"analyzer": analyzer}),
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


def fit_text(text: pd.Series, config: FeatureConfig = FeatureConfig()) -> tuple[list[str], list[float]]:
    """The text vocabulary (the ``config.text_vocabulary`` most frequent terms in at least
    ``config.min_text_df`` videos) and its idf, cut into terms by ``config.text_tokenizer``."""
    if config.text_tokenizer not in TEXT_TOKENIZERS:
        raise ValueError(f"unknown text_tokenizer {config.text_tokenizer!r}; choose from {', '.join(TEXT_TOKENIZERS)}")
    analyzer = TEXT_TOKENIZERS[config.text_tokenizer]
    if text.str.strip().str.len().gt(0).sum() < config.min_text_df:
        return [], []
    vectorizer = TfidfVectorizer(
        max_features=config.text_vocabulary, min_df=config.min_text_df, sublinear_tf=True, dtype=np.float32,
        **({} if analyzer is None else {"analyzer": analyzer}),
    )
    try:
        vectorizer.fit(text)
    except ValueError:  # nothing but stop words or single-use words: no text feature
        return [], []
    return [str(t) for t in vectorizer.get_feature_names_out()], [float(x) for x in vectorizer.idf_]


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
    default the catalogue's at ``reference_time``); text, names (normalised), prices and durations
    from the catalogue as given (the run's: content, not likes)."""
    profiles = empty_profiles() if profiles is None else profiles
    performers = catalogue["performers"].explode()
    tags = catalogue["tags"].explode()
    terms, idf = fit_text(catalogue_text(catalogue), config)
    if popularity_values is None:
        popularity_values = popularity_shares(catalogue["id"], train_likes, reference_time)
    if age_values is None:
        age_values = age_days(catalogue["created_at"], reference_time)
    # Names are normalised with the text (a legacy tokenizer, for comparisons, keeps exact names too).
    normalised = TEXT_TOKENIZERS[config.text_tokenizer] is not None
    return FeatureSpec(
        videos=Vocabulary.by_frequency(train_likes["video_id"], config.max_videos),
        genres=Vocabulary.by_frequency(catalogue["genre"], 10_000, normalised),
        makers=Vocabulary.by_frequency(catalogue["maker"], config.max_makers, normalised),
        performers=Vocabulary.by_frequency(performers, config.max_performers, normalised),
        tags=Vocabulary.by_frequency(tags, config.max_tags, normalised),
        text_terms=terms,
        text_idf=idf,
        price=LogNormaliser.fit(catalogue["price"]),
        duration=LogNormaliser.fit(catalogue["duration_seconds"]),
        popularity=LogNormaliser.fit(popularity_values),
        age=LogNormaliser.fit(age_values),
        reference_time=pd.Timestamp(reference_time).isoformat(),
        age_ranges=Vocabulary.by_frequency(profiles["age_range"], 100, normalised),
        regions=Vocabulary.by_frequency(profiles["region"], 1_000, normalised),
        name_normalisation=NAME_NORMALISATION if normalised else LEGACY_NAME_NORMALISATION,
        text_tokenizer=config.text_tokenizer,
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
    return text_inputs(spec, catalogue_text(catalogue))


def text_inputs(spec: FeatureSpec, text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each text's TEXT_TERMS highest-weighted TF-IDF terms (index, weight), zero-padded."""
    n = len(text)
    idx = np.zeros((n, TEXT_TERMS), dtype=np.int64)
    weight = np.zeros((n, TEXT_TERMS), dtype=np.float32)
    if not spec.text_terms or n == 0:
        return idx, weight
    matrix = spec.text_vectorizer().transform(text).tocsr()
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
