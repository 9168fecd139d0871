"""Validates and cleans the catalogue and likes before training (Great Expectations).

One expectation suite per table (``likes``, ``videos``, ``training_window``), built from Great
Expectations' own expectations and validated through one context per run (:mod:`gx_context`).
Every rule counts the rows that break it, shows examples, and says what happens to them: a few
bad rows are dropped or repaired and reported; more than the rule tolerates (its ``mostly``)
stops the line before training (a blocking check), because that is a broken import, not noise.

A rule that needs another table (a like's video must be in the catalogue) or a value the
pipeline derives (the text the item tower reads: title and description together; the number of
performers) is checked on a "check asset": the table with that column added, as GX's authors
recommend for foreign keys on data frames. Cleaning stays in pandas (:func:`clean_likes`,
:func:`clean_catalogue`), because serving cleans the same way without validating.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.expectations import Expectation
from great_expectations.expectations.row_conditions import Column
from pydantic import BaseModel, ConfigDict, Field

from twotower_pipeline.gx_context import MAX_EXAMPLES, GxContext
from twotower_pipeline.model.features import CJK_CHARACTERS, MAX_TEXT_CHARS, catalogue_text, combining_marks

Share = Annotated[float, Field(ge=0.0, lt=1.0)]
"""A tolerated share of bad rows; below 1, so that every rule can fail."""


class QualityRules(BaseModel):
    """Tolerances; a larger share of bad rows blocks training. The one definition of these
    settings: the Dagster config of ``training_data`` (``DataQualityConfig``) is this class."""

    model_config = ConfigDict(frozen=True)

    max_invalid_like_share: Share = Field(
        0.01, description="Share of likes without user, video or time, in the future, or of videos the "
        "catalogue does not have, that is dropped; more blocks training.")
    max_duplicate_like_share: Share = Field(
        0.10, description="Share of likes in a repeated (user, video) pair; repeats are dropped (the "
        "earliest like kept); more blocks training.")
    max_invalid_video_share: Share = Field(
        0.01, description="Share of videos with an impossible price or duration (treated as unknown); "
        "more blocks training.")
    max_repaired_video_share: Share = Field(
        0.05, description="Share of videos whose text or lists are cleaned or cut, or whose text has no "
        "word; more is a broken import or encoding and blocks training.")
    min_likes: int = Field(1_000, ge=1, description="Valid likes the training window must hold.")
    min_users: int = Field(10, ge=1, description="Users with valid likes the training window must hold.")


@dataclass(frozen=True)
class RuleOutcome:
    """One expectation's result, in the words of the rule it checks."""

    rule: str
    table: str
    passed: bool
    bad_rows: int  # rows breaking the rule; for a count rule (volume), how many are missing
    total_rows: int
    tolerance: str
    action: str
    examples: list[str] = field(default_factory=list)
    expectation: str = ""  # the Great Expectations expectation type
    column: str | None = None
    key: str = ""  # short name for numeric metadata, e.g. likes.video_known
    observed: int | float | str | None = None  # GX's observed value (count rules) or error
    unexpected_percent: float | None = None  # share of checked rows, in percent (column rules)
    fix: str = ""  # what to do when it fails

    def describe(self) -> str:
        shown = f"; examples: {', '.join(self.examples)}" if self.examples else ""
        found = (f"observed {self.observed}" if self.unexpected_percent is None and self.observed is not None
                 else f"{self.bad_rows} of {self.total_rows} rows break it")
        todo = f"; to fix: {self.fix}" if not self.passed and self.fix else ""
        return (f"[{'ok' if self.passed else 'FAILED'}] {self.table}: {self.rule} - {found} "
                f"(tolerated: {self.tolerance}); {self.action}{shown}{todo}")


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


# -- the rules ------------------------------------------------------------------------------------

MAX_PRICE = 1_000_000  # yen; anything above is a data-entry error, not a price
MAX_DURATION_SECONDS = 48 * 3600
MAX_LIST_ENTRIES = 100  # performers or tags of one video
_CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# Invisible characters that change how text reads or hide inside words: bidirectional controls
# (a reversed file name, a title that reads differently than it sorts), zero-width space, word
# joiner, byte-order mark. Removed. Zero-width joiners and variation selectors are left to the
# text's normalisation (they belong to emoji and some scripts; they are no sign of trouble).
# Escapes, not the characters: the pattern is shown in the Data Docs, where a raw U+202E would
# reverse the page's text.
_INVISIBLE_CHARACTERS = r"[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
MAX_COMBINING_MARKS = 4
"""Combining marks in a row on one character; more is "zalgo" text, cut to this many."""
_HAS_WORDS = f"\\w\\w|[{CJK_CHARACTERS}]"
"""A term the text input can use: two word characters in a row, or one kana or kanji."""


def _stacked_marks(keep: bool = False) -> str:
    """More than MAX_COMBINING_MARKS marks in a row; with ``keep``, the first ones as group 1."""
    mark = f"[{combining_marks()}]"
    return f"({mark}{{{MAX_COMBINING_MARKS}}}){mark}+" if keep else f"{mark}{{{MAX_COMBINING_MARKS + 1},}}"


@dataclass(frozen=True)
class _Check:
    """A rule: the GX expectation that checks it, what happens to the rows that break it, what
    to do when too many do, and how to show one of them."""

    key: str
    rule: str
    expectation: Expectation
    tolerance: str
    action: str
    fix: str
    example: Callable[[pd.DataFrame], pd.Series] | None = None


def _share(share: float) -> str:
    return f"{share * 100:.3g}%"


def _like_label(frame: pd.DataFrame) -> pd.Series:
    return "user " + frame["user_id"].astype(str) + " / video " + frame["video_id"].astype(str)


def _video_label(frame: pd.DataFrame) -> pd.Series:
    return "video " + frame["id"].astype(str)


def _likes_check_frame(likes: pd.DataFrame, known_videos: set[str]) -> pd.DataFrame:
    """The likes, oldest first, with ``catalogue_video_id``: the catalogue's id for the liked
    video (a left join on videos.id), missing when the catalogue has no such video."""
    frame = likes[["user_id", "video_id", "created_at"]].reset_index(drop=True)
    return frame.assign(catalogue_video_id=frame["video_id"].where(frame["video_id"].isin(known_videos)))


def _like_checks(as_of: datetime, rules: QualityRules) -> list[_Check]:
    mostly = 1.0 - rules.max_invalid_like_share
    tolerated = _share(rules.max_invalid_like_share)
    fix = ("find why the app's likes import writes such rows; if they are expected, raise "
           "max_invalid_like_share in the training_data config")
    e = gx.expectations
    return [
        _Check("likes.user_id_present", "user_id is present", e.ExpectColumnValuesToNotBeNull(
            column="user_id", mostly=mostly), tolerated, "dropped", fix, _like_label),
        _Check("likes.video_id_present", "video_id is present", e.ExpectColumnValuesToNotBeNull(
            column="video_id", mostly=mostly), tolerated, "dropped", fix, _like_label),
        _Check("likes.created_at_present", "created_at is present",
               e.ExpectColumnValuesToNotBeNull(column="created_at", mostly=mostly), tolerated, "dropped", fix,
               _like_label),
        _Check("likes.created_at_not_future", "created_at is not in the future",
               e.ExpectColumnValuesToBeBetween(column="created_at", max_value=pd.Timestamp(as_of).to_pydatetime(),
                                               mostly=mostly),
               tolerated, "dropped", fix + " (or the app's clock is ahead)",
               lambda f: _like_label(f) + " at " + f["created_at"].astype(str)),
        _Check("likes.video_known", "video_id is a video of the catalogue",
               e.ExpectColumnValuesToNotBeNull(column="catalogue_video_id", mostly=mostly,
                                               row_condition=Column("video_id").is_not_null()),
               tolerated, "dropped",
               "check that the catalogue snapshot (videos) and the likes come from the same database and "
               "that videos are not deleted while their likes stay; if expected, raise max_invalid_like_share",
               _like_label),
        _Check("likes.once_per_user_and_video", "a user likes a video once",
               e.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "video_id"],
                                                 ignore_row_if="any_value_is_missing",  # counted above
                                                 mostly=1.0 - rules.max_duplicate_like_share),
               _share(rules.max_duplicate_like_share), "repeats dropped, earliest like kept",
               "find why the likes import repeats rows (a replayed sync?); if expected, raise "
               "max_duplicate_like_share", _like_label),
    ]


def _list_length(f: pd.DataFrame, column: str) -> pd.Series:
    return f[column].map(lambda v: len(v) if isinstance(v, (list, tuple, np.ndarray)) else 0)


def _videos_check_frame(catalogue: pd.DataFrame) -> pd.DataFrame:
    """The catalogue's checked columns, with the text the item tower reads (title and
    description, :func:`catalogue_text`), its length, and the number of performers and tags
    (lengths as numbers: a too-long text would otherwise be its own example)."""
    text = catalogue_text(catalogue)
    return pd.DataFrame({
        "id": catalogue["id"].astype(str),
        "price": catalogue["price"].astype(float),
        "duration_seconds": catalogue["duration_seconds"].astype(float),
        "text": text,
        "text_length": text.str.len(),
        "performer_count": _list_length(catalogue, "performers"),
        "tag_count": _list_length(catalogue, "tags"),
    }).reset_index(drop=True)


def _video_checks(rules: QualityRules) -> list[_Check]:
    e = gx.expectations
    invalid, invalid_share = 1.0 - rules.max_invalid_video_share, _share(rules.max_invalid_video_share)
    repaired, repaired_share = 1.0 - rules.max_repaired_video_share, _share(rules.max_repaired_video_share)
    values_fix = ("fix the catalogue import (prices in yen, durations in seconds); if expected, raise "
                  "max_invalid_video_share in the training_data config")
    text_fix = ("check the catalogue import's text encoding and source; if expected, raise "
                "max_repaired_video_share in the training_data config")

    def text_check(key: str, rule: str, expectation: Expectation, action: str, label=_video_label) -> _Check:
        return _Check(f"videos.{key}", rule, expectation, repaired_share, action, text_fix, label)

    return [
        _Check("videos.price_in_range", f"price is a number from 0 to {MAX_PRICE:,}",
               e.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=MAX_PRICE, mostly=invalid),
               invalid_share, "treated as unknown price", values_fix,
               lambda f: _video_label(f) + " price " + f["price"].astype(str)),
        _Check("videos.duration_in_range", f"duration_seconds is > 0 and at most {MAX_DURATION_SECONDS:,}",
               e.ExpectColumnValuesToBeBetween(column="duration_seconds", min_value=0, strict_min=True,
                                               max_value=MAX_DURATION_SECONDS, mostly=invalid),
               invalid_share, "treated as unknown duration", values_fix,
               lambda f: _video_label(f) + " duration " + f["duration_seconds"].astype(str)),
        text_check("text_length", f"title and description together at most {MAX_TEXT_CHARS:,} characters",
                   e.ExpectColumnValuesToBeBetween(column="text_length", max_value=MAX_TEXT_CHARS, mostly=repaired),
                   "truncated", lambda f: _video_label(f) + " has " + f["text_length"].astype(str) + " characters"),
        text_check("no_control_characters", "title and description without control characters",
                   e.ExpectColumnValuesToNotMatchRegex(column="text", regex=_CONTROL_CHARACTERS, mostly=repaired),
                   "control characters removed"),
        text_check("no_invisible_characters",
                   "title and description without bidirectional controls or zero-width characters",
                   e.ExpectColumnValuesToNotMatchRegex(column="text", regex=_INVISIBLE_CHARACTERS, mostly=repaired),
                   "removed"),
        text_check("no_stacked_marks",
                   f"title and description without more than {MAX_COMBINING_MARKS} combining marks on one character",
                   e.ExpectColumnValuesToNotMatchRegex(column="text", regex=_stacked_marks(), mostly=repaired),
                   f"marks beyond the first {MAX_COMBINING_MARKS} removed"),
        text_check("has_words", "title and description have at least one word",
                   e.ExpectColumnValuesToMatchRegex(column="text", regex=_HAS_WORDS, mostly=repaired),
                   "no text feature (empty, or only symbols, emoji and punctuation)",
                   lambda f: _video_label(f) + " text " + f["text"].str.slice(0, 40).map(repr)),
        text_check("performers_count", f"at most {MAX_LIST_ENTRIES} performers",
                   e.ExpectColumnValuesToBeBetween(column="performer_count", max_value=MAX_LIST_ENTRIES,
                                                   mostly=repaired),
                   "only the first 8 performers are used",
                   lambda f: _video_label(f) + " has " + f["performer_count"].astype(str) + " performers"),
        text_check("tags_count", f"at most {MAX_LIST_ENTRIES} tags",
                   e.ExpectColumnValuesToBeBetween(column="tag_count", max_value=MAX_LIST_ENTRIES, mostly=repaired),
                   "only the first 16 tags are used",
                   lambda f: _video_label(f) + " has " + f["tag_count"].astype(str) + " tags"),
    ]


def _window_checks(rules: QualityRules) -> list[_Check]:
    e = gx.expectations
    return [
        _Check("training_window.likes", f"at least {rules.min_likes} valid likes in the training window",
               e.ExpectTableRowCountToBeBetween(min_value=rules.min_likes), f"minimum {rules.min_likes}",
               "training needs more likes",
               "check the app's likes import and the window (raw_likes' window_days), or lower min_likes"),
        _Check("training_window.users", f"at least {rules.min_users} users with valid likes",
               e.ExpectColumnUniqueValueCountToBeBetween(column="user_id", min_value=rules.min_users),
               f"minimum {rules.min_users}", "training needs more users",
               "check the app's likes import and the window (raw_likes' window_days), or lower min_users"),
    ]


# -- running the suites ---------------------------------------------------------------------------

def _raised(exception_info: dict | None) -> str | None:
    """GX's error message when computing an expectation failed (a missing column, a bad type)."""
    infos = [exception_info or {}]
    infos += [v for v in (exception_info or {}).values() if isinstance(v, dict)]
    for info in infos:
        if info.get("raised_exception"):
            return str(info.get("exception_message"))
    return None


def _json_safe(value: Any) -> int | float | str | None:
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _validate(quality: GxContext, table: str, label: str, frame: pd.DataFrame,
              checks: list[_Check]) -> list[RuleOutcome]:
    """Validate ``frame`` against the suite made of ``checks``; one outcome per check."""
    for check in checks:  # the rule in the project's words, beside GX's own sentence in the Data Docs
        check.expectation.meta = {"rule": check.rule, "key": check.key}
        check.expectation.notes = (f"{check.rule} ({check.key}): {check.action}; tolerated {check.tolerance}. "
                                   f"If it fails: {check.fix}.")
    result: ExpectationSuiteValidationResult = quality.validate(table, frame, [c.expectation for c in checks])
    by_key = {r.expectation_config.meta["key"]: r for r in result.results}
    outcomes = []
    for check in checks:
        checked = by_key[check.key]
        found = checked.result or {}
        error = _raised(checked.exception_info)
        unexpected = found.get("unexpected_count")
        observed = _json_safe(found.get("observed_value")) if error is None else f"error: {error}"
        if unexpected is not None:
            bad = int(unexpected)
        elif isinstance(observed, (int, float)) and getattr(check.expectation, "min_value", None) is not None:
            bad = max(0, int(check.expectation.min_value) - int(observed))  # how many are missing
        else:
            bad = 0
        indices = [i for i in found.get("partial_unexpected_index_list") or [] if i in frame.index]
        examples = ([str(v) for v in check.example(frame.loc[indices[:MAX_EXAMPLES]])]
                    if check.example is not None and indices else [])
        percent = found.get("unexpected_percent")
        outcomes.append(RuleOutcome(
            rule=check.rule, table=label, passed=bool(checked.success) and error is None, bad_rows=bad,
            total_rows=int(observed) if unexpected is None and isinstance(observed, int) else len(frame),
            tolerance=check.tolerance, action=check.action, examples=examples,
            expectation=checked.expectation_config.type, column=getattr(check.expectation, "column", None),
            key=check.key, observed=observed if unexpected is None else int(unexpected),
            unexpected_percent=None if percent is None and unexpected is None else float(percent or 0.0),
            fix=check.fix,
        ))
    return outcomes


# -- cleaning (also used by serving, which does not validate) -------------------------------------

def _bad_price(f: pd.DataFrame) -> pd.Series:
    return f["price"].notna() & ~((f["price"] >= 0) & (f["price"] <= MAX_PRICE))


def _bad_duration(f: pd.DataFrame) -> pd.Series:
    return f["duration_seconds"].notna() & ~((f["duration_seconds"] > 0)
                                             & (f["duration_seconds"] <= MAX_DURATION_SECONDS))


def _broken_likes(likes: pd.DataFrame, known_videos: set[str], as_of: datetime) -> pd.Series:
    """Likes a like rule drops: no user, video or time, in the future, of an unknown video, or a
    repeat of an earlier like of the same video by the same user."""
    broken = (likes["user_id"].isna() | likes["video_id"].isna() | likes["created_at"].isna()
              | (likes["created_at"] > pd.Timestamp(as_of)) | ~likes["video_id"].isin(known_videos))
    return broken | likes.duplicated(["user_id", "video_id"], keep="first")


def clean_likes(likes: pd.DataFrame, known_videos: set[str], as_of: datetime) -> pd.DataFrame:
    """Likes that pass every like rule (earliest of repeated likes kept), oldest first."""
    ordered = likes.sort_values("created_at", kind="stable", na_position="first")
    return ordered[~_broken_likes(ordered, known_videos, as_of).to_numpy(dtype=bool)].reset_index(drop=True)


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
    quality: GxContext | None = None,
) -> TrainingData:
    """Validate both tables (one GX suite each, through ``quality``: the run's context, a fresh
    one without Data Docs when not given), then clean them. The volume rules are a third suite on
    the clean likes of the training window (since ``window_start``)."""
    quality = quality or GxContext()
    known_videos = set(catalogue["id"])
    likes = raw_likes.sort_values("created_at", kind="stable", na_position="first").reset_index(drop=True)
    outcomes = _validate(quality, "likes", "likes", _likes_check_frame(likes, known_videos),
                         _like_checks(as_of, rules))
    outcomes += _validate(quality, "videos", "videos", _videos_check_frame(catalogue), _video_checks(rules))
    clean = likes[~_broken_likes(likes, known_videos, as_of).to_numpy(dtype=bool)].reset_index(drop=True)
    in_window = clean if window_start is None else clean[clean["created_at"] >= pd.Timestamp(window_start)]
    outcomes += _validate(quality, "training_window", "training window",
                          in_window[["user_id"]].reset_index(drop=True), _window_checks(rules))
    if profiles is not None:
        profiles = profiles[profiles["user_id"].isin(set(clean["user_id"]))].reset_index(drop=True)
    return TrainingData(catalogue=clean_catalogue(catalogue), likes=clean, outcomes=outcomes, as_of=as_of,
                        profiles=profiles, window_start=window_start)
