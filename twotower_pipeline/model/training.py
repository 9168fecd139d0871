"""Training the two towers (TensorFlow/Keras), and their diagnostics.

Two losses, selected by ``TrainingConfig.loss``:

- ``sampled_softmax``: in-batch sampled softmax with logQ correction (Yi et al., 2019). Every
  other positive of the batch is a negative, and each logit is corrected by the log of how often
  its video is sampled as a positive, so popular videos are not pushed down for being frequent
  negatives.
- ``margin``: the design document's contrastive loss, max(0, margin - s(u, pos) + s(u, neg)),
  with negatives drawn 60% at random, 30% hard (highest-scored not-liked, refreshed per epoch)
  and 10% popular-not-liked.

Training is standard Keras ``fit``; early stopping watches Recall@50 of each user's last
training like (the validation set), so both losses are judged by the same measure. The data it
trains on and how it is scored come from :mod:`twotower_pipeline.model.preparation`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twotower_pipeline.model.config import LOSSES, TrainingConfig  # noqa: F401
from twotower_pipeline.model.dataset import LIKES_WINDOW_DAYS, Examples
from twotower_pipeline.model.evaluation import RECALL_K, HoldoutUsers, evaluate_ranker, top_k_by_vectors, vector_scores
from twotower_pipeline.model.features import ITEM_INPUTS, USER_INPUTS, FeatureSpec, latest_histories
from twotower_pipeline.model.negatives import NegativeSampler
from twotower_pipeline.model.preparation import (
    PreparedTraining,
    baseline_metrics,
    holdout_seen,
    prepare_training,
    score_towers,
)
from twotower_pipeline.model.serving_path import user_histories
from twotower_pipeline.model.tensorflow_import import keras
from twotower_pipeline.model.towers import build_towers

ops = keras.ops

EpochCallback = Callable[[int, dict[str, float]], None]


class ExampleBatches(keras.utils.PyDataset):
    """Batches of (history -> next like) examples, reshuffled (and negatives redrawn) every epoch.
    Each positive's item inputs are as of its own time (its popularity then, its age then)."""

    def __init__(self, prepared: PreparedTraining, examples: Examples, batch_size: int, log_q: np.ndarray,
                 seed: int, sampler: NegativeSampler | None = None, negatives_per_example: int = 0,
                 shuffle: bool = True) -> None:
        super().__init__()
        self.prepared, self.examples, self.batch_size = prepared, examples, batch_size
        self.log_q = log_q.astype(np.float32)
        self.sampler, self.negatives_per_example, self.shuffle = sampler, negatives_per_example, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(examples)) if shuffle else np.arange(len(examples))
        self.drop_remainder = len(examples) >= batch_size
        self.numeric = prepared.numeric_at(examples.positive_rows, examples.positive_times)

    def __len__(self) -> int:
        if self.drop_remainder:
            return len(self.examples) // self.batch_size
        return 1 if len(self.examples) else 0

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        picked = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        rows = self.examples.history_rows[picked]
        batch = self.prepared.tables.user_inputs(rows, self.examples.history_age_days[picked],
                                                 self.prepared.demographics.take(self.examples.users[picked]))
        positives = self.examples.positive_rows[picked]
        batch.update({name: self.prepared.items[name][positives] for name in ITEM_INPUTS})
        batch["numeric"] = self.numeric[picked]
        batch["log_q"] = self.log_q[positives]
        batch["positive_row"] = positives
        if self.sampler is not None:
            negatives = self.sampler.sample(self.examples.users[picked], self.negatives_per_example).reshape(-1)
            batch.update({f"neg_{name}": self.prepared.items[name][negatives] for name in ITEM_INPUTS})
            # Negatives are as of their example's time too: time inputs never tell positives apart.
            times = np.repeat(self.examples.positive_times[picked], self.negatives_per_example)
            batch["neg_numeric"] = self.prepared.numeric_at(negatives, times)
        return batch

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.examples))


# -- model -----------------------------------------------------------------------------------
class TwoTowerRetrieval(keras.Model):
    """Both towers trained jointly; the loss lives in compute_loss so fit/evaluate stay standard."""

    def __init__(self, user_tower: keras.Model, item_tower: keras.Model, config: TrainingConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.loss_name = config.loss
        self.temperature = config.temperature
        self.logq_correction = config.logq_correction
        self.margin = config.margin
        self.negatives_per_example = config.negatives_per_example

    def call(self, inputs, training=False):
        users = self.user_tower({k: inputs[k] for k in USER_INPUTS}, training=training)
        positives = self.item_tower({k: inputs[k] for k in ITEM_INPUTS}, training=training)
        if self.loss_name == "margin":
            negatives = self.item_tower({k: inputs[f"neg_{k}"] for k in ITEM_INPUTS}, training=training)
            return users, positives, negatives
        return users, positives

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.loss_name == "margin":
            users, positives, negatives = y_pred
            negatives = ops.reshape(negatives, (-1, self.negatives_per_example, ops.shape(negatives)[-1]))
            positive_score = ops.sum(users * positives, axis=-1, keepdims=True)
            negative_score = ops.sum(ops.expand_dims(users, 1) * negatives, axis=-1)
            return ops.mean(ops.relu(self.margin - positive_score + negative_score))
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


def embed_items(item_tower: keras.Model, items: dict[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    return np.asarray(item_tower.predict({k: items[k] for k in ITEM_INPUTS}, batch_size=batch_size, verbose=0))


def embed_users(user_tower: keras.Model, inputs: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    return np.asarray(user_tower.predict({k: inputs[k] for k in USER_INPUTS}, batch_size=batch_size, verbose=0))


class EpochEvaluation(keras.callbacks.Callback):
    """After each epoch: validation Recall@50 (for early stopping) and fresh hard negatives."""

    def __init__(self, prepared: PreparedTraining, sampler: NegativeSampler | None) -> None:
        super().__init__()
        self.prepared, self.sampler = prepared, sampler
        v = prepared.validation_examples
        self.inputs = prepared.tables.user_inputs(v.history_rows, v.history_age_days,
                                                  prepared.demographics.take(v.users))
        self.seen = [prepared.sequences.rows[u][:-1] for u in v.users]

    def on_epoch_end(self, epoch, logs=None):
        towers = self.model
        item_vectors = embed_items(towers.item_tower, self.prepared.items)
        user_vectors = embed_users(towers.user_tower, self.inputs)
        if len(user_vectors):
            top = top_k_by_vectors(user_vectors, item_vectors, self.seen, RECALL_K)
            hits = (top == self.prepared.validation_examples.positive_rows[:, None]).any(axis=1)
            logs["val_recall_at_50"] = float(hits.mean())
        if self.sampler is not None:
            p = self.prepared
            latest, ages = latest_histories(p.sequences.rows, p.sequences.times, None, p.tables.pad_row,
                                            p.spec.history_length)
            inputs = p.tables.user_inputs(latest, ages, p.demographics)
            self.sampler.refresh_hard_pools(embed_users(towers.user_tower, inputs), item_vectors)


# -- result ----------------------------------------------------------------------------------
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
    feature_importance: dict[str, float] = field(default_factory=dict)
    prepared: PreparedTraining | None = field(default=None, repr=False)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(directory / "feature_spec.json")
        self.user_tower.save_weights(directory / "user_tower.weights.h5")
        self.item_tower.save_weights(directory / "item_tower.weights.h5")
        (directory / "training.json").write_text(json.dumps({
            "config": asdict(self.config), "history": self.history, "metrics": self.metrics,
            "baselines": self.baselines, "stats": self.stats, "feature_importance": self.feature_importance,
        }, indent=2))

    @classmethod
    def load(cls, directory: Path) -> TrainedTwoTower:
        spec = FeatureSpec.load(directory / "feature_spec.json")
        record = json.loads((directory / "training.json").read_text())
        config = TrainingConfig.from_dict(record["config"])
        user_tower, item_tower = build_towers(spec, config.tower)
        user_tower.load_weights(directory / "user_tower.weights.h5")
        item_tower.load_weights(directory / "item_tower.weights.h5")
        return cls(spec, config, user_tower, item_tower, record["history"], record["metrics"],
                   record["baselines"], record["stats"], record.get("feature_importance", {}))


FEATURE_GROUPS: dict[str, tuple[str, tuple[str, ...], int | None]] = {
    # group name: (tower, inputs permuted together, numeric column or None)
    "user: liked videos": ("user_tower", ("hist_video_idx",), None),
    "user: genres of liked videos": ("user_tower", ("hist_genre_idx",), None),
    "user: makers of liked videos": ("user_tower", ("hist_maker_idx",), None),
    "user: prices of liked videos": ("user_tower", ("hist_price",), None),
    "user: recency of likes": ("user_tower", ("hist_age_days",), None),
    "user: demographics": ("user_tower", ("user_age_range_idx", "user_region_idx"), None),
    "item: video id": ("item_tower", ("video_idx",), None),
    "item: genre": ("item_tower", ("genre_idx",), None),
    "item: maker": ("item_tower", ("maker_idx",), None),
    "item: title and description": ("item_tower", ("text_idx", "text_weight"), None),
    "item: performers": ("item_tower", ("performer_idx",), None),
    "item: tags": ("item_tower", ("tag_idx",), None),
    "item: price": ("item_tower", ("numeric",), 0),
    "item: duration": ("item_tower", ("numeric",), 1),
    "item: popularity": ("item_tower", ("numeric",), 2),
    "item: age": ("item_tower", ("numeric",), 3),
}


def permutation_importance(trained: TrainedTwoTower, prepared: PreparedTraining, seed: int = 0,
                           max_users: int = 500) -> dict[str, float]:
    """Drop in served Recall@50 when one feature group is shuffled across users (or videos)."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.permutation(len(prepared.holdout_user_ids))[:max_users])
    users = prepared.holdout_user_ids[picked]
    histories = user_histories(prepared.spec, prepared.snapshot, prepared.tables, only_users=set(users))
    order = pd.Index(histories.user_ids).get_indexer(users)
    user_inputs = {name: values[order] for name, values in histories.inputs.items()}
    seen = [rows for i, rows in enumerate(holdout_seen(prepared)) if i in set(picked)]
    holdout = HoldoutUsers(seen, [prepared.holdout_relevant[i] for i in picked])
    base_users = embed_users(trained.user_tower, user_inputs)
    base_items = embed_items(trained.item_tower, prepared.items)

    def recall(user_vectors: np.ndarray, item_vectors: np.ndarray) -> float:
        return evaluate_ranker(vector_scores(user_vectors, item_vectors), holdout, prepared.item_genres)[
            "recall_at_50"]

    baseline = recall(base_users, base_items)
    importance = {}
    for group, (tower, names, column) in FEATURE_GROUPS.items():
        source = user_inputs if tower == "user_tower" else prepared.items
        shuffled = dict(source)
        permutation = rng.permutation(len(next(iter(source.values()))))
        for name in names:
            if column is None:
                shuffled[name] = source[name][permutation]
            else:
                values = source[name].copy()
                values[:, column] = values[permutation, column]
                shuffled[name] = values
        if tower == "user_tower":
            score = recall(embed_users(trained.user_tower, shuffled), base_items)
        else:
            score = recall(base_users, embed_items(trained.item_tower, shuffled))
        importance[group] = baseline - score
    return importance


def _strategy(config: TrainingConfig):
    import tensorflow as tf

    return tf.distribute.MirroredStrategy() if config.distribution == "mirrored" else tf.distribute.get_strategy()


def train_two_tower(
    catalogue: pd.DataFrame,
    likes: pd.DataFrame,
    config: TrainingConfig = TrainingConfig(),
    on_epoch_end: EpochCallback | None = None,
    importance: bool = True,
    profiles: pd.DataFrame | None = None,
    as_of: object = None,
    window_days: float | None = LIKES_WINDOW_DAYS,
) -> TrainedTwoTower:
    """Train on all but each user's most recent likes; score what would be served on those,
    against the baselines. ``as_of``: the moment of the run (default: just after the newest like)."""
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    prepared = prepare_training(catalogue, likes, config, profiles, as_of, window_days)
    n_items = len(prepared.catalogue)
    counts = np.bincount(prepared.train_examples.positive_rows, minlength=n_items).astype(np.float64)
    log_q = np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))
    sampler = None
    if config.loss == "margin":
        sampler = NegativeSampler(prepared.sequences.rows, prepared.popular.scores, config.negative_mix,
                                  config.hard_negative_pool, seed=config.seed)

    with _strategy(config).scope():
        user_tower, item_tower = build_towers(prepared.spec, config.tower)
        model = TwoTowerRetrieval(user_tower, item_tower, config)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    callbacks: list[keras.callbacks.Callback] = [
        EpochEvaluation(prepared, sampler),
        keras.callbacks.EarlyStopping(monitor="val_recall_at_50", mode="max",
                                      patience=config.early_stopping_patience, restore_best_weights=True,
                                      start_from_epoch=config.min_epochs),
    ]
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch_end(epoch, {k: float(v) for k, v in (logs or {}).items()})
        ))
    batches = ExampleBatches(prepared, prepared.train_examples, config.batch_size, log_q, config.seed, sampler,
                             config.negatives_per_example)
    fit_started = time.perf_counter()
    fit = model.fit(batches, epochs=config.epochs, callbacks=callbacks, verbose=0)
    fit_seconds = time.perf_counter() - fit_started
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    epochs_run = len(history.get("loss", []))

    evaluation_started = time.perf_counter()
    metrics = score_towers(prepared, prepared.spec, lambda x: embed_users(user_tower, x),
                           lambda x: embed_items(item_tower, x))
    baselines = baseline_metrics(prepared)
    trained = TrainedTwoTower(prepared.spec, config, user_tower, item_tower, history, metrics, baselines, {},
                              prepared=prepared)
    if importance:
        trained.feature_importance = permutation_importance(trained, prepared, seed=config.seed)
    trained.stats = {
        "train_likes": float(len(prepared.split.train)),
        "test_likes": float(len(prepared.split.test)),
        "holdout_users": float(len(prepared.holdout_user_ids)),
        "cold_start_half_life_days": float(prepared.spec.popularity_half_life_days),
        "training_examples": float(len(prepared.train_examples)),
        "validation_examples": float(len(prepared.validation_examples)),
        "users": float(len(prepared.sequences.user_ids)),
        "catalogue_videos": float(n_items),
        "video_vocabulary": float(prepared.spec.videos.size),
        "epochs_run": float(epochs_run),
        "best_epoch": float(int(np.argmax(history.get("val_recall_at_50", [0]))) + 1),
        "fit_seconds": fit_seconds,
        "seconds_per_epoch": fit_seconds / max(epochs_run, 1),
        "examples_per_second": len(prepared.train_examples) * epochs_run / max(fit_seconds, 1e-9),
        "evaluation_seconds": time.perf_counter() - evaluation_started,
        "total_seconds": time.perf_counter() - started,
    }
    return trained
