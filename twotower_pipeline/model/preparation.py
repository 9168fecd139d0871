"""Everything a training derives from one snapshot of catalogue and likes, before TensorFlow: the
temporal holdout, the training examples, the feature spec, and the evaluation of any towers on
the holdout as they would be served, next to the baselines. Plain numpy and pandas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from twotower_pipeline.model.baselines import ease_scores
from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.dataset import (
    LIKES_WINDOW_DAYS,
    Examples,
    TemporalSplit,
    UserSequences,
    next_like_examples,
    temporal_holdout,
)
from twotower_pipeline.model.evaluation import HoldoutUsers, evaluate_ranker, item_knn_scores, popularity_scores
from twotower_pipeline.model.features import (
    HISTORY_LENGTH,
    Demographics,
    FeatureSpec,
    HistoryTables,
    PopularityIndex,
    age_days,
    epoch_seconds,
    fit_feature_spec,
    numeric_inputs,
)
from twotower_pipeline.model.serving_path import (
    Embed,
    PopularVideos,
    Snapshot,
    attach_catalogue_rows,
    item_inputs,
    popular_videos,
    served_ranking,
    tune_cold_start,
)


class TrainingDataError(ValueError):
    """The likes cannot train a model; the message says which rule and what to do."""


@dataclass
class PreparedTraining:
    """Everything derived from one snapshot of catalogue and likes, shared by training, the
    evaluation of this model, of its baselines and of the champion.

    ``snapshot`` is what the database would hold without the held-out likes, at the moment of
    the run: the evaluation serves it exactly as publishing serves the real database.
    """

    catalogue: pd.DataFrame
    split: TemporalSplit
    as_of: pd.Timestamp
    spec: FeatureSpec
    snapshot: Snapshot
    popular: PopularVideos
    cold_start_scores: dict[str, float]  # newcomers' Recall@50 of each cold-start choice (tune_cold_start)
    popularity_index: PopularityIndex
    items: dict[str, np.ndarray]  # item inputs as of the run (validation ranking, hard negatives)
    tables: HistoryTables
    sequences: UserSequences
    train_examples: Examples
    validation_examples: Examples
    holdout_user_ids: np.ndarray
    holdout_relevant: list[np.ndarray]
    holdout_times: list[np.ndarray]  # epoch seconds of each held-out like, aligned with holdout_relevant
    item_genres: np.ndarray
    profiles: pd.DataFrame | None
    demographics: Demographics

    def numeric_at(self, rows: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """The item numeric input of catalogue ``rows`` at ``seconds`` (epoch), as training examples see it."""
        return numeric_inputs(self.spec, self.catalogue, rows, self.popularity_index.shares(rows, seconds),
                              age_days(self.catalogue["created_at"].iloc[rows], seconds))


def prepare_training(catalogue: pd.DataFrame, likes: pd.DataFrame, config: TrainingConfig,
                     profiles: pd.DataFrame | None = None, as_of: object = None,
                     window_days: float | None = LIKES_WINDOW_DAYS) -> PreparedTraining:
    """Hold out each user's newest likes, build the training examples from the rest (targets in the
    last ``window_days`` before ``as_of``; histories of any age), and fit the feature spec.

    ``likes`` are the clean likes of any age (histories reach back as far as serving's);
    ``as_of`` is the moment of the run (default: one second after the newest like).
    """
    catalogue = catalogue.reset_index(drop=True)
    likes = attach_catalogue_rows(catalogue, likes)
    if likes.empty:
        raise TrainingDataError("the likes hold no likes of catalogue videos; nothing to train on")
    as_of = pd.Timestamp(as_of) if as_of is not None else likes["created_at"].max() + pd.Timedelta(seconds=1)
    split = temporal_holdout(likes, config.holdout)
    if split.train.empty:
        raise TrainingDataError("the training window holds no likes of catalogue videos; nothing to train on")
    training_users = split.train["user_id"].unique()
    if profiles is not None:
        profiles = profiles[profiles["user_id"].isin(training_users)]
    pad_row = len(catalogue)
    sequences = UserSequences.from_likes(split.train)
    window_start = None if window_days is None else (as_of - pd.Timedelta(days=window_days)).value / 1e9
    examples = next_like_examples(sequences, pad_row, HISTORY_LENGTH, first_target_time=window_start)
    train_examples, validation_examples = examples.subset(~examples.is_last), examples.subset(examples.is_last)
    if len(train_examples) < config.min_training_examples:
        raise TrainingDataError(
            f"only {len(train_examples)} training examples (likes that follow an earlier like of the same "
            f"user) in the training window; at least {config.min_training_examples} are needed: wait for more "
            "likes or lower min_training_examples"
        )
    index = PopularityIndex.from_likes(split.train)
    positives, times = train_examples.positive_rows, train_examples.positive_times
    in_window = split.train if window_start is None else split.train[
        split.train["created_at"] >= pd.Timestamp(window_start * 1e9, unit="ns", tz="UTC")]
    spec = fit_feature_spec(
        catalogue, in_window, split.train_end, config.features, profiles,
        popularity_values=index.shares(positives, times),
        age_values=age_days(catalogue["created_at"].iloc[positives], times),
    )
    snapshot = Snapshot.of(catalogue, split.train, profiles, as_of)
    cold_start, cold_start_scores = tune_cold_start(snapshot)
    spec.popularity_half_life_days = cold_start.half_life_days
    spec.segment_prior_likes = cold_start.segment_prior_likes
    tables = HistoryTables.from_catalogue(spec, catalogue)
    test_by_user = split.test.groupby("user_id")
    holdout_user_ids = np.array(sorted(test_by_user.groups), dtype=object)
    prepared = PreparedTraining(
        catalogue=catalogue, split=split, as_of=as_of, spec=spec, snapshot=snapshot,
        popular=popular_videos(snapshot, cold_start), cold_start_scores=cold_start_scores,
        popularity_index=index,
        items=item_inputs(spec, catalogue, split.train, as_of),
        tables=tables, sequences=sequences, train_examples=train_examples,
        validation_examples=validation_examples,
        holdout_user_ids=holdout_user_ids,
        holdout_relevant=[test_by_user.get_group(u)["row"].to_numpy(dtype=np.int64) for u in holdout_user_ids],
        holdout_times=[epoch_seconds(test_by_user.get_group(u)["created_at"]) for u in holdout_user_ids],
        item_genres=pd.factorize(catalogue["genre"].fillna(""))[0],
        profiles=profiles, demographics=Demographics.lookup(spec, sequences.user_ids, profiles),
    )
    return prepared


@dataclass(frozen=True)
class HoldoutSlice:
    """Some of the held-out users, and of their held-out likes (e.g. those after a cutoff)."""

    user_ids: np.ndarray
    relevant: list[np.ndarray]


def held_out_after(prepared: PreparedTraining, cutoff: pd.Timestamp) -> HoldoutSlice:
    """The held-out likes made after ``cutoff``: likes a model trained up to the cutoff never saw."""
    seconds = cutoff.value / 1e9
    users, relevant = [], []
    for user, rows, times in zip(prepared.holdout_user_ids, prepared.holdout_relevant, prepared.holdout_times):
        later = rows[times > seconds]
        if len(later):
            users.append(user)
            relevant.append(later)
    return HoldoutSlice(np.asarray(users, dtype=object), relevant)


def score_towers(prepared: PreparedTraining, spec: FeatureSpec, embed_users_of: Embed, embed_items_of: Embed,
                 held_out: HoldoutSlice | None = None) -> dict[str, float]:
    """Metrics of what a pair of towers (this model, or the champion with its own feature spec)
    serves on this training's holdout, or on a slice of it: recommend_videos on the database
    without the held-out likes, at the moment of the run. Includes the share of users served
    by a vector, by their segment's popular videos and by overall popularity."""
    user_ids = prepared.holdout_user_ids if held_out is None else held_out.user_ids
    relevant = prepared.holdout_relevant if held_out is None else held_out.relevant
    ranking = served_ranking(prepared.snapshot, spec, embed_users_of, embed_items_of, user_ids, prepared.popular)
    metrics = evaluate_ranker(ranking.scores, ranking.holdout(relevant), prepared.item_genres)
    metrics.update({f"served_by_{way.replace(' ', '_')}_share": share for way, share in ranking.shares().items()})
    return metrics


def holdout_seen(prepared: PreparedTraining) -> list[np.ndarray]:
    liked = prepared.snapshot.likes.groupby("user_id")["row"]
    rows = {user: values.to_numpy(dtype=np.int64) for user, values in liked}
    return [rows.get(user, np.zeros(0, dtype=np.int64)) for user in prepared.holdout_user_ids]


def baseline_metrics(prepared: PreparedTraining) -> dict[str, dict[str, float]]:
    """Popularity (the served fallback's order), ItemKNN and EASE on the same holdout, each ranking
    the whole catalogue without the user's likes."""
    seen = holdout_seen(prepared)
    holdout = HoldoutUsers(seen, prepared.holdout_relevant)
    n_items = len(prepared.catalogue)
    train_seen = prepared.sequences.rows
    return {
        "popularity": evaluate_ranker(popularity_scores(prepared.popular.scores), holdout, prepared.item_genres),
        "item_knn": evaluate_ranker(item_knn_scores(train_seen, seen, n_items), holdout, prepared.item_genres),
        "ease": evaluate_ranker(ease_scores(train_seen, seen, n_items), holdout, prepared.item_genres),
    }
