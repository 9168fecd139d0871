"""Training the two towers and scoring them on the holdout, next to a popularity baseline.

The loss is an in-batch sampled softmax with logQ correction (Yi et al., 2019): every other
positive in the batch is a negative, and each logit is corrected by the log of how often its
video is sampled as a positive, so popular videos are not pushed down merely for being
frequent negatives. Training is standard Keras ``fit`` with early stopping on the
validation loss (each user's last training like).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from twotower_pipeline.model.dataset import (
    HoldoutConfig,
    TemporalSplit,
    UserSequences,
    next_like_examples,
    temporal_holdout,
)
from twotower_pipeline.model.evaluation import (
    RECALL_K,
    HoldoutUsers,
    rank_by_popularity,
    rank_by_vectors,
    ranking_metrics,
)
from twotower_pipeline.model.features import (
    ITEM_INPUTS,
    USER_INPUTS,
    FeatureConfig,
    FeatureSpec,
    HistoryTables,
    fit_feature_spec,
    item_features,
    latest_histories,
    popularity_counts,
)
from twotower_pipeline.model.towers import TowerConfig, build_item_tower, build_user_tower

EpochCallback = Callable[[int, dict[str, float]], None]


class TrainingDataError(ValueError):
    """The likes cannot train a model; the message says which rule and what to do."""


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 15
    batch_size: int = 512
    learning_rate: float = 0.002
    temperature: float = 0.07
    logq_correction: bool = True
    early_stopping_patience: int = 2
    seed: int = 42
    min_training_examples: int = 100
    tower: TowerConfig = field(default_factory=TowerConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def flat_params(self) -> dict[str, object]:
        """Every hyper-parameter as one flat mapping (for MLflow params)."""
        flat: dict[str, object] = {}
        for key, value in asdict(self).items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat


class InBatchSoftmaxRetrieval(keras.Model):
    """Both towers trained jointly; the loss lives in compute_loss so fit/evaluate stay standard."""

    def __init__(self, user_tower: keras.Model, item_tower: keras.Model, temperature: float,
                 logq_correction: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.temperature = temperature
        self.logq_correction = logq_correction

    def call(self, inputs, training=False):
        users = self.user_tower({k: inputs[k] for k in USER_INPUTS}, training=training)
        items = self.item_tower({k: inputs[k] for k in ITEM_INPUTS}, training=training)
        return users, items

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        users, items = y_pred
        logits = ops.matmul(users, ops.transpose(items)) / self.temperature
        if self.logq_correction:
            logits = logits - ops.expand_dims(x["log_q"], 0)
        positives = x["positive_row"]
        same_video = ops.equal(ops.expand_dims(positives, 1), ops.expand_dims(positives, 0))
        diagonal = ops.eye(ops.shape(logits)[0], dtype="bool")
        # A video that is another example's positive in the same batch is not a negative here.
        logits = ops.where(ops.logical_and(same_video, ops.logical_not(diagonal)), -1e9, logits)
        labels = ops.arange(ops.shape(logits)[0])
        return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


@dataclass
class TrainedTwoTower:
    spec: FeatureSpec
    config: TrainingConfig
    user_tower: keras.Model
    item_tower: keras.Model
    history: dict[str, list[float]]
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    stats: dict[str, float]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(directory / "feature_spec.json")
        self.user_tower.save_weights(directory / "user_tower.weights.h5")
        self.item_tower.save_weights(directory / "item_tower.weights.h5")
        (directory / "training.json").write_text(json.dumps({
            "config": asdict(self.config), "history": self.history, "metrics": self.metrics,
            "baselines": self.baselines, "stats": self.stats,
        }, indent=2))

    @classmethod
    def load(cls, directory: Path) -> TrainedTwoTower:
        spec = FeatureSpec.load(directory / "feature_spec.json")
        record = json.loads((directory / "training.json").read_text())
        raw = record["config"]
        config = TrainingConfig(
            **{k: v for k, v in raw.items() if k not in ("tower", "holdout", "features")},
            tower=TowerConfig(**raw["tower"]),
            holdout=HoldoutConfig(**raw["holdout"]),
            features=FeatureConfig(**raw["features"]),
        )
        user_tower = build_user_tower(spec, config.tower)
        item_tower = build_item_tower(spec, config.tower)
        user_tower.load_weights(directory / "user_tower.weights.h5")
        item_tower.load_weights(directory / "item_tower.weights.h5")
        return cls(spec, config, user_tower, item_tower, record["history"], record["metrics"],
                   record["baselines"], record["stats"])


def attach_catalogue_rows(catalogue: pd.DataFrame, likes: pd.DataFrame) -> pd.DataFrame:
    """likes with a ``row`` column (position of the video in the catalogue); unknown videos dropped."""
    position = pd.Series(np.arange(len(catalogue)), index=catalogue["id"].to_numpy())
    rows = likes["video_id"].map(position)
    out = likes[rows.notna()].copy()
    out["row"] = rows[rows.notna()].astype(np.int64).to_numpy()
    return out


def _dataset(examples, tables: HistoryTables, items: dict[str, np.ndarray], log_q: np.ndarray,
             batch_size: int, shuffle_seed: int | None) -> tf.data.Dataset:
    item_tensors = {name: tf.constant(items[name]) for name in ITEM_INPUTS}
    history = {
        "hist_video_idx": tf.constant(tables.video_idx),
        "hist_genre_idx": tf.constant(tables.genre_idx),
        "hist_maker_idx": tf.constant(tables.maker_idx),
        "hist_price": tf.constant(tables.price.astype(np.float32)),
    }
    log_q_table = tf.constant(log_q.astype(np.float32))
    pad_row = tables.pad_row

    def to_inputs(rows, ages, positive):
        inputs = {name: tf.gather(table, rows) for name, table in history.items()}
        inputs["hist_age_days"] = tf.where(rows == pad_row, 0.0, ages)
        inputs.update({name: tf.gather(table, positive) for name, table in item_tensors.items()})
        inputs["log_q"] = tf.gather(log_q_table, positive)
        inputs["positive_row"] = positive
        return inputs

    ds = tf.data.Dataset.from_tensor_slices(
        (examples.history_rows, examples.history_age_days, examples.positive_rows)
    )
    if shuffle_seed is not None:
        ds = ds.shuffle(len(examples), seed=shuffle_seed, reshuffle_each_iteration=True)
    drop = len(examples) >= batch_size
    return ds.batch(batch_size, drop_remainder=drop).map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def holdout_users(split: TemporalSplit) -> tuple[UserSequences, HoldoutUsers, np.ndarray]:
    """Held-out users' training sequences, their seen/relevant rows, and their reference times."""
    test_users = split.test["user_id"].unique()
    train = split.train[split.train["user_id"].isin(test_users)]
    sequences = UserSequences.from_likes(train)
    test_by_user = split.test.groupby("user_id")
    relevant = [test_by_user.get_group(u)["row"].to_numpy() for u in sequences.user_ids]
    first_test = np.array(
        [test_by_user.get_group(u)["created_at"].min().value / 1e9 for u in sequences.user_ids], dtype=np.float64
    )
    return sequences, HoldoutUsers(seen=sequences.rows, relevant=relevant), first_test


def embed_items(item_tower: keras.Model, items: dict[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    return np.asarray(item_tower.predict({k: items[k] for k in ITEM_INPUTS}, batch_size=batch_size, verbose=0))


def embed_users(user_tower: keras.Model, inputs: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    return np.asarray(user_tower.predict({k: inputs[k] for k in USER_INPUTS}, batch_size=batch_size, verbose=0))


def train_two_tower(
    catalogue: pd.DataFrame,
    likes: pd.DataFrame,
    config: TrainingConfig = TrainingConfig(),
    on_epoch_end: EpochCallback | None = None,
) -> TrainedTwoTower:
    """Train on all but each user's most recent likes; score on those against popularity."""
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    catalogue = catalogue.reset_index(drop=True)
    likes = attach_catalogue_rows(catalogue, likes)
    split = temporal_holdout(likes, config.holdout)
    if split.train.empty:
        raise TrainingDataError("the training window holds no likes of catalogue videos; nothing to train on")
    reference = split.train_end + pd.Timedelta(seconds=1)
    spec = fit_feature_spec(catalogue, split.train, reference, config.features)
    popularity = popularity_counts(catalogue["id"], split.train, reference)
    items = item_features(spec, catalogue, popularity, reference)
    tables = HistoryTables.from_catalogue(spec, catalogue)

    examples, is_last = next_like_examples(UserSequences.from_likes(split.train), tables.pad_row)
    train_examples, validation_examples = examples.subset(~is_last), examples.subset(is_last)
    if len(train_examples) < config.min_training_examples:
        raise TrainingDataError(
            f"only {len(train_examples)} training examples (likes that follow an earlier like of the same "
            f"user) in the training window; at least {config.min_training_examples} are needed"
        )
    counts = np.bincount(train_examples.positive_rows, minlength=len(catalogue)).astype(np.float64)
    log_q = np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))

    user_tower = build_user_tower(spec, config.tower)
    item_tower = build_item_tower(spec, config.tower)
    model = InBatchSoftmaxRetrieval(user_tower, item_tower, config.temperature, config.logq_correction)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
        )
    ]
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch_end(epoch, {k: float(v) for k, v in (logs or {}).items()})
        ))
    fit = model.fit(
        _dataset(train_examples, tables, items, log_q, config.batch_size, config.seed),
        validation_data=_dataset(validation_examples, tables, items, log_q, config.batch_size, None)
        if len(validation_examples) >= 2 else None,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, with the configured seed
        verbose=0,
    )
    train_seconds = time.perf_counter() - started

    sequences, holdout, reference_times = holdout_users(split)
    rows, ages = latest_histories(sequences.rows, sequences.times, reference_times, tables.pad_row)
    user_vectors = embed_users(user_tower, tables.user_inputs(rows, ages))
    item_vectors = embed_items(item_tower, items)
    metrics = ranking_metrics(rank_by_vectors(user_vectors, item_vectors, holdout.seen, RECALL_K), holdout,
                              len(catalogue))
    baselines = {
        "popularity": ranking_metrics(rank_by_popularity(popularity, holdout.seen, RECALL_K), holdout,
                                      len(catalogue)),
    }
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    stats = {
        "train_likes": float(len(split.train)),
        "test_likes": float(len(split.test)),
        "training_examples": float(len(train_examples)),
        "validation_examples": float(len(validation_examples)),
        "users": float(split.train["user_id"].nunique()),
        "catalogue_videos": float(len(catalogue)),
        "video_vocabulary": float(spec.videos.size),
        "epochs_run": float(len(history.get("loss", []))),
        "training_seconds": train_seconds,
        "evaluation_seconds": time.perf_counter() - started - train_seconds,
    }
    return TrainedTwoTower(spec, config, user_tower, item_tower, history, metrics, baselines, stats)
