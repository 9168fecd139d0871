"""Validates and cleans the catalogue and likes before training (Great Expectations).

Every rule counts the rows that break it, shows examples, and says what happens to them:
a few bad rows are dropped or imputed and reported; more than the rule tolerates stops the
line before training (a blocking check), because that is a broken import, not noise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from twotower_pipeline.model.features import CJK_CHARACTERS, MAX_TEXT_CHARS, combining_marks

for _name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
    logging.getLogger(_name).setLevel(logging.ERROR)

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class QualityRules:
    """Tolerances; a larger share of bad rows blocks training."""

    max_invalid_like_share: float = 0.01
    max_duplicate_like_share: float = 0.10
    max_invalid_video_share: float = 0.01
    min_likes: int = 1_000
    min_users: int = 10


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    table: str
    passed: bool
    bad_rows: int
    total_rows: int
    tolerance: str
    action: str
    examples: list[str] = field(default_factory=list)

    def describe(self) -> str:
        shown = f"; examples: {', '.join(self.examples)}" if self.examples else ""
        return (
            f"[{'ok' if self.passed else 'FAILED'}] {self.table}: {self.rule} - {self.bad_rows} of "
            f"{self.total_rows} rows break it (tolerated: {self.tolerance}); {self.action}{shown}"
        )


@dataclass
class TrainingData:
    """The cleaned catalogue and likes, and what validation found on the way."""

    catalogue: pd.DataFrame
    likes: pd.DataFrame
    outcomes: list[RuleOutcome]
    as_of: datetime
    profiles: pd.DataFrame | None = None
    window_start: datetime | None = None  # training examples are the likes since then; older ones are history

    def window_likes(self) -> pd.DataFrame:
        if self.window_start is None:
            return self.likes
        return self.likes[self.likes["created_at"] >= pd.Timestamp(self.window_start)]

    @property
    def window_days(self) -> float | None:
        if self.window_start is None:
            return None
        return (pd.Timestamp(self.as_of) - pd.Timestamp(self.window_start)).total_seconds() / 86_400

    @property
    def passed(self) -> bool:
        return all(outcome.passed for outcome in self.outcomes)

    @property
    def failures(self) -> list[RuleOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.passed]

    def report(self) -> str:
        return "\n".join(outcome.describe() for outcome in self.outcomes)


@dataclass(frozen=True)
class _Rule:
    rule: str
    table: str
    flag: Callable[[pd.DataFrame], pd.Series]
    example: Callable[[pd.DataFrame], pd.Series]
    max_share: float
    action: str


def _examples(frame: pd.DataFrame, mask: pd.Series, describe: Callable[[pd.DataFrame], pd.Series]) -> list[str]:
    return [str(value) for value in describe(frame[mask].head(MAX_EXAMPLES))]


def _like_label(frame: pd.DataFrame) -> pd.Series:
    return "user " + frame["user_id"].astype(str) + " / video " + frame["video_id"].astype(str)


def _validate_flags(table: str, frame: pd.DataFrame, rules: list[_Rule]) -> list[RuleOutcome]:
    """Run one GX suite over flag columns (True = row breaks the rule) with `mostly` tolerances."""
    flags = pd.DataFrame({f"breaks_{i}": rule.flag(frame).fillna(True).astype(bool) for i, rule in enumerate(rules)})
    if flags.empty:
        return [RuleOutcome(r.rule, table, True, 0, 0, f"{r.max_share:.0%}", r.action) for r in rules]
    result = _validate(table, flags, [
        gx.expectations.ExpectColumnValuesToBeInSet(
            column=f"breaks_{i}", value_set=[False], mostly=1.0 - rule.max_share, meta={"rule": rule.rule},
        )
        for i, rule in enumerate(rules)
    ])
    outcomes = []
    for i, (rule, checked) in enumerate(zip(rules, result.results)):
        mask = flags[f"breaks_{i}"]
        outcomes.append(RuleOutcome(
            rule=rule.rule, table=table, passed=bool(checked.success),
            bad_rows=int(checked.result.get("unexpected_count", int(mask.sum()))), total_rows=len(frame),
            tolerance=f"{rule.max_share:.0%}", action=rule.action,
            examples=_examples(frame, mask, rule.example),
        ))
    return outcomes


def _validate(name: str, frame: pd.DataFrame, expectations: list) -> gx.core.ExpectationSuiteValidationResult:
    """Validate an in-memory frame against expectations in a throwaway (ephemeral) GX context."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_quality", expectations=expectations))
    asset = context.data_sources.add_pandas(name).add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(suite, result_format="SUMMARY")


def _validate_volume(likes: pd.DataFrame, rules: QualityRules) -> list[RuleOutcome]:
    result = _validate("training_likes", likes[["user_id", "video_id"]], [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=rules.min_likes),
        gx.expectations.ExpectColumnUniqueValueCountToBeBetween(column="user_id", min_value=rules.min_users),
    ])
    observed_likes, observed_users = len(likes), int(likes["user_id"].nunique())
    return [
        RuleOutcome(
            rule=f"at least {rules.min_likes} valid likes in the training window",
            table="training set", passed=bool(result.results[0].success),
            bad_rows=max(0, rules.min_likes - observed_likes), total_rows=observed_likes,
            tolerance=f"minimum {rules.min_likes}", action="training needs more likes: check the app's likes import",
        ),
        RuleOutcome(
            rule=f"at least {rules.min_users} users with valid likes",
            table="training set", passed=bool(result.results[1].success),
            bad_rows=max(0, rules.min_users - observed_users), total_rows=observed_users,
            tolerance=f"minimum {rules.min_users}", action="training needs more users",
        ),
    ]


def _like_rules(known_videos: set[str], as_of: datetime, rules: QualityRules) -> list[_Rule]:
    as_of_ts = pd.Timestamp(as_of)
    return [
        _Rule("user_id is present", "likes", lambda f: f["user_id"].isna(), _like_label,
              rules.max_invalid_like_share, "dropped"),
        _Rule("video_id is present", "likes", lambda f: f["video_id"].isna(), _like_label,
              rules.max_invalid_like_share, "dropped"),
        _Rule("created_at is present and not in the future", "likes",
              lambda f: f["created_at"].isna() | (f["created_at"] > as_of_ts),
              lambda f: _like_label(f) + " at " + f["created_at"].astype(str),
              rules.max_invalid_like_share, "dropped"),
        _Rule("video_id is a video of the catalogue", "likes",
              lambda f: f["video_id"].notna() & ~f["video_id"].isin(known_videos), _like_label,
              rules.max_invalid_like_share, "dropped"),
        _Rule("a user likes a video once", "likes",
              lambda f: f.duplicated(["user_id", "video_id"], keep="first") & f["user_id"].notna()
              & f["video_id"].notna(),
              _like_label, rules.max_duplicate_like_share, "repeats dropped, earliest like kept"),
    ]


MAX_PRICE = 1_000_000  # yen; anything above is a data-entry error, not a price
MAX_DURATION_SECONDS = 48 * 3600
MAX_LIST_ENTRIES = 100  # performers or tags of one video
_CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# Invisible characters that change how text reads or hide inside words: bidirectional controls
# (a reversed file name, a title that reads differently than it sorts), zero-width space, word
# joiner, byte-order mark. Removed. Zero-width joiners and variation selectors are left to the
# text's normalisation (they belong to emoji and some scripts; they are no sign of trouble).
_INVISIBLE_CHARACTERS = "[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
MAX_COMBINING_MARKS = 4
"""Combining marks in a row on one character; more is "zalgo" text, cut to this many."""


def _stacked_marks(keep: bool = False) -> str:
    """More than MAX_COMBINING_MARKS marks in a row; with ``keep``, the first ones as group 1."""
    mark = f"[{combining_marks()}]"
    return f"({mark}{{{MAX_COMBINING_MARKS}}}){mark}+" if keep else f"{mark}{{{MAX_COMBINING_MARKS + 1},}}"


def _has_no_words(text: pd.Series) -> pd.Series:
    """Text with no term the text input could use: empty, or only symbols, emoji and punctuation
    (a term is two word characters in a row, or one kana or kanji)."""
    return ~text.str.contains(f"\\w\\w|[{CJK_CHARACTERS}]", regex=True)


def _bad_price(f: pd.DataFrame) -> pd.Series:
    return f["price"].notna() & ~((f["price"] >= 0) & (f["price"] <= MAX_PRICE))


def _bad_duration(f: pd.DataFrame) -> pd.Series:
    return f["duration_seconds"].notna() & ~((f["duration_seconds"] > 0)
                                             & (f["duration_seconds"] <= MAX_DURATION_SECONDS))


def _text(f: pd.DataFrame) -> pd.Series:
    return f["title"].fillna("").astype(str) + " " + f["description"].fillna("").astype(str)


def _text_length(f: pd.DataFrame) -> pd.Series:
    return f["title"].fillna("").astype(str).str.len() + f["description"].fillna("").astype(str).str.len()


def _list_length(f: pd.DataFrame, column: str) -> pd.Series:
    return f[column].map(lambda v: len(v) if isinstance(v, (list, tuple, np.ndarray)) else 0)


def _video_rules(rules: QualityRules) -> list[_Rule]:
    return [
        _Rule(f"price is a number from 0 to {MAX_PRICE:,}", "videos", _bad_price,
              lambda f: "video " + f["id"] + " price " + f["price"].astype(str),
              rules.max_invalid_video_share, "treated as unknown price"),
        _Rule(f"duration_seconds is > 0 and at most {MAX_DURATION_SECONDS:,}", "videos", _bad_duration,
              lambda f: "video " + f["id"] + " duration " + f["duration_seconds"].astype(str),
              rules.max_invalid_video_share, "treated as unknown duration"),
        _Rule(f"title and description together at most {MAX_TEXT_CHARS:,} characters", "videos",
              lambda f: _text_length(f) > MAX_TEXT_CHARS,
              lambda f: "video " + f["id"] + " has " + _text_length(f).astype(str) + " characters",
              1.0, "truncated"),
        _Rule("title and description without control characters", "videos",
              lambda f: (f["title"].fillna("").astype(str) + f["description"].fillna("").astype(str))
              .str.contains(_CONTROL_CHARACTERS, regex=True),
              lambda f: "video " + f["id"], 1.0, "control characters removed"),
        _Rule("title and description without bidirectional controls or zero-width characters", "videos",
              lambda f: _text(f).str.contains(_INVISIBLE_CHARACTERS, regex=True),
              lambda f: "video " + f["id"], 1.0, "removed"),
        _Rule(f"title and description without more than {MAX_COMBINING_MARKS} combining marks on one character",
              "videos", lambda f: _text(f).str.contains(_stacked_marks(), regex=True),
              lambda f: "video " + f["id"], 1.0, f"marks beyond the first {MAX_COMBINING_MARKS} removed"),
        _Rule("title and description have at least one word", "videos", lambda f: _has_no_words(_text(f)),
              lambda f: "video " + f["id"] + " title " + f["title"].fillna("").astype(str).str.slice(0, 40).map(repr),
              1.0, "no text feature (empty, or only symbols, emoji and punctuation)"),
        _Rule(f"at most {MAX_LIST_ENTRIES} performers and {MAX_LIST_ENTRIES} tags", "videos",
              lambda f: (_list_length(f, "performers") > MAX_LIST_ENTRIES) | (_list_length(f, "tags") > MAX_LIST_ENTRIES),
              lambda f: "video " + f["id"] + " has " + _list_length(f, "performers").astype(str) + " performers, "
              + _list_length(f, "tags").astype(str) + " tags",
              1.0, "only the first performers and tags are used (8 and 16)"),
    ]


def _drop_broken(likes: pd.DataFrame, rules: list[_Rule]) -> pd.DataFrame:
    keep = np.ones(len(likes), dtype=bool)
    for rule in rules:
        keep &= ~rule.flag(likes).fillna(True).to_numpy(dtype=bool)
    return likes[keep].reset_index(drop=True)


def clean_likes(likes: pd.DataFrame, known_videos: set[str], as_of: datetime) -> pd.DataFrame:
    """Likes that pass every like rule (earliest of repeated likes kept), oldest first."""
    ordered = likes.sort_values("created_at", kind="stable", na_position="first")
    return _drop_broken(ordered, _like_rules(known_videos, as_of, QualityRules()))


def clean_catalogue(catalogue: pd.DataFrame) -> pd.DataFrame:
    """Impossible prices and durations become unknown; text is made safe (control characters
    removed, bidirectional controls and zero-width characters removed, stacked combining marks cut
    to MAX_COMBINING_MARKS, truncated to MAX_TEXT_CHARS, missing text empty). Text is then
    normalised (NFKC, lower case) where it is cut into terms, as names are where they are looked up
    (``features.normalise_text``)."""
    clean = catalogue.copy()
    clean["price"] = clean["price"].astype(float)
    clean["duration_seconds"] = clean["duration_seconds"].astype(float)
    clean.loc[_bad_price(clean), "price"] = np.nan
    clean.loc[_bad_duration(clean), "duration_seconds"] = np.nan
    for column in ("title", "description"):
        clean[column] = (clean[column].fillna("").astype(str).str.replace(_CONTROL_CHARACTERS, " ", regex=True)
                         .str.replace(_INVISIBLE_CHARACTERS, "", regex=True)
                         .str.replace(_stacked_marks(keep=True), r"\1", regex=True)
                         .str.slice(0, MAX_TEXT_CHARS))
    return clean


def prepare_training_data(
    catalogue: pd.DataFrame,
    raw_likes: pd.DataFrame,
    as_of: datetime,
    rules: QualityRules = QualityRules(),
    profiles: pd.DataFrame | None = None,
    window_start: datetime | None = None,
) -> TrainingData:
    """Clean both tables, counting every dropped or repaired row by the rule it broke. The volume
    rules count the likes of the training window (since ``window_start``)."""
    like_rules = _like_rules(set(catalogue["id"]), as_of, rules)
    likes = raw_likes.sort_values("created_at", kind="stable", na_position="first")
    outcomes = _validate_flags("likes", likes, like_rules)
    outcomes += _validate_flags("videos", catalogue, _video_rules(rules))
    clean = _drop_broken(likes, like_rules)
    in_window = clean if window_start is None else clean[clean["created_at"] >= pd.Timestamp(window_start)]
    outcomes += _validate_volume(in_window, rules)
    if profiles is not None:
        profiles = profiles[profiles["user_id"].isin(set(clean["user_id"]))].reset_index(drop=True)
    return TrainingData(catalogue=clean_catalogue(catalogue), likes=clean, outcomes=outcomes, as_of=as_of,
                        profiles=profiles, window_start=window_start)
