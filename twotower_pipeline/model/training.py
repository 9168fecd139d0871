"""Training the two towers (TensorFlow/Keras), and their diagnostics.

Two losses, selected by ``TrainingConfig.loss``:

- ``sampled_softmax``: in-batch sampled softmax with logQ correction (Yi et al., 2019). Every
  other positive of the batch is a negative, and each logit is corrected by the log of how often
  its video is sampled as a positive, so popular videos are not pushed down for being frequent
  negatives.
- ``margin``: the design document's contrastive loss, max(0, margin - s(u, pos) + s(u, neg)),
  with negatives drawn 60% at random, 30% hard (highest-scored not-liked, refreshed per epoch)
  and 10% popular-not-liked.

Both are in :mod:`twotower_pipeline.model.losses`. Training is standard Keras ``fit``; early
stopping watches Recall@50 of each user's last training like (the validation set), so both losses
are judged by the same measure, and the best epoch's weights are kept. The data it trains on and
how it is scored come from :mod:`twotower_pipeline.model.preparation`; permutation importance is in
:mod:`twotower_pipeline.model.importance`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.dataset import LIKES_WINDOW_DAYS, Examples
from twotower_pipeline.model.evaluation import RECALL_K, top_k_by_vectors
from twotower_pipeline.model.features import ITEM_INPUTS, USER_INPUTS, FeatureSpec, latest_histories
from twotower_pipeline.model.importance import GroupImportance, permutation_importance
from twotower_pipeline.model.losses import (
    accidental_hits,
    in_batch_softmax,
    liked_by_row_user,
    likes_matrix,
    margin_hinge,
    replica_mean,
)
from twotower_pipeline.model.negatives import NegativeSampler
from twotower_pipeline.model.preparation import (
    PreparedTraining,
    baseline_metrics,
    prepare_training,
    score_towers,
)
from twotower_pipeline.model.tensorflow_import import keras, tf
from twotower_pipeline.model.towers import build_towers

ops = keras.ops

EpochCallback = Callable[[int, dict[str, float]], None]


class ExampleBatches(keras.utils.PyDataset):
    """Batches of (history -> next like) examples, reshuffled (and negatives redrawn) every epoch.
    Each positive's item inputs are as of its own time (its popularity then, its age then).

    With ``liked`` (users x catalogue rows, the training likes), each batch carries
    ``liked_by_user``: whether each example's user liked each other example's positive, per
    replica slice (see :func:`~twotower_pipeline.model.losses.liked_by_row_user`), so the in-batch
    softmax does not treat a user's other likes as negatives. Negatives of the margin loss are
    [B, K, ...] so a replica's slice of the batch holds its examples' negatives."""

    def __init__(self, prepared: PreparedTraining, examples: Examples, batch_size: int, log_q: np.ndarray,
                 seed: int, sampler: NegativeSampler | None = None, negatives_per_example: int = 0,
                 shuffle: bool = True, liked: sp.csr_matrix | None = None, replicas: int = 1) -> None:
        super().__init__()
        self.prepared, self.examples, self.batch_size = prepared, examples, batch_size
        self.log_q = log_q.astype(np.float32)
        self.sampler, self.negatives_per_example, self.shuffle = sampler, negatives_per_example, shuffle
        self.liked, self.replicas = liked, replicas
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(examples)) if shuffle else np.arange(len(examples))
        self.drop_remainder = len(examples) >= batch_size
        self.numeric = prepared.numeric_at(examples.positive_rows, examples.positive_times)

    def __len__(self) -> int:
        if self.drop_remainder:
            return len(self.examples) // self.batch_size
        return 1 if len(self.examples) else 0

    def picked(self, index: int) -> np.ndarray:
        """The examples of batch ``index`` in this epoch's order."""
        picked = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        if self.replicas > 1 and len(picked) >= self.replicas:
            # tf.distribute splits a batch evenly or not at all (Keras builds the model from the
            # replicas' slices, which must have one shape): a multiple of the replicas.
            picked = picked[: len(picked) - len(picked) % self.replicas]
        return picked

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        picked = self.picked(index)
        rows = self.examples.history_rows[picked]
        users = self.examples.users[picked]
        batch = self.prepared.tables.user_inputs(rows, self.examples.history_age_days[picked],
                                                 self.prepared.demographics.take(users))
        positives = self.examples.positive_rows[picked]
        batch.update({name: self.prepared.items[name][positives] for name in ITEM_INPUTS})
        batch["numeric"] = self.numeric[picked]
        batch["log_q"] = self.log_q[positives]
        batch["positive_row"] = positives
        if self.liked is not None:
            # As numbers: Keras reduces a sample batch across replicas to build the model, and
            # tf.distribute cannot sum booleans.
            batch["liked_by_user"] = liked_by_row_user(self.liked, users, positives, self.replicas).astype(np.uint8)
        if self.sampler is not None:
            k = self.negatives_per_example
            negatives = self.sampler.sample(users, k).reshape(-1)
            batch.update({f"neg_{name}": _per_example(self.prepared.items[name][negatives], k)
                          for name in ITEM_INPUTS})
            # Negatives are as of their example's time too: time inputs never tell positives apart.
            times = np.repeat(self.examples.positive_times[picked], k)
            batch["neg_numeric"] = _per_example(self.prepared.numeric_at(negatives, times), k)
        return batch

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.examples))


def _per_example(values: np.ndarray, k: int) -> np.ndarray:
    """[B * k, ...] -> [B, k, ...]."""
    return values.reshape((-1, k) + values.shape[1:])


def batch_stream(batches: ExampleBatches, prefetch: int = 2):
    """``batches`` as a tf.data pipeline that prepares the next batches while the model trains on
    the current one; one pass over it is one epoch.

    For the in-batch softmax TensorFlow gathers each batch from the examples' arrays (in parallel,
    outside the training loop); the only Python per batch is the mask of the users' other likes,
    built from the sparse likes matrix in numpy. Batches of the margin loss carry negatives the
    numpy sampler draws, so ``ExampleBatches`` builds them in the pipeline's background thread.
    Either way the batches are ``batches[i]``, in the same order."""
    if batches.sampler is not None:
        signature = {name: tf.TensorSpec((None,) + value.shape[1:], tf.as_dtype(value.dtype))
                     for name, value in batches[0].items()}

        def epoch():
            for index in range(len(batches)):
                yield batches[index]
            batches.on_epoch_end()

        return tf.data.Dataset.from_generator(epoch, output_signature=signature).prefetch(prefetch)

    def orders():
        # One array per epoch: the examples of each batch, as __getitem__ picks them.
        yield np.stack([batches.picked(index) for index in range(len(batches))])
        batches.on_epoch_end()

    gather = _batch_gather(batches)
    return (tf.data.Dataset.from_generator(orders, output_signature=tf.TensorSpec((None, None), tf.int64))
            .unbatch()
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(prefetch))


def _batch_gather(batches: ExampleBatches):
    """The function from a batch's example indices to the batch ``batches[i]`` would build."""
    prepared, examples = batches.prepared, batches.examples
    tables, pad_row = prepared.tables, prepared.tables.pad_row
    history = tf.constant(examples.history_rows.astype(np.int32 if pad_row < 2**31 - 1 else np.int64))
    ages = tf.constant(np.where(examples.history_rows == pad_row, 0.0, examples.history_age_days).astype(np.float32))
    users = tf.constant(examples.users)
    positives = tf.constant(examples.positive_rows)
    numeric = tf.constant(batches.numeric)
    log_q = tf.constant(batches.log_q)
    per_row = {"hist_video_idx": tables.video_idx, "hist_genre_idx": tables.genre_idx,
               "hist_maker_idx": tables.maker_idx, "hist_price": tables.price.astype(np.float32)}
    per_row = {name: tf.constant(values) for name, values in per_row.items()}
    per_user = {"user_age_range_idx": prepared.demographics.age_range_idx,
                "user_region_idx": prepared.demographics.region_idx}
    per_user = {name: tf.constant(values) for name, values in per_user.items()}
    per_item = {name: tf.constant(prepared.items[name]) for name in ITEM_INPUTS if name != "numeric"}
    liked, replicas = batches.liked, batches.replicas

    def mask(batch_users, batch_positives):
        return liked_by_row_user(liked, batch_users, batch_positives, replicas).astype(np.uint8)

    def gather(picked):
        rows = tf.gather(history, picked)
        batch_users = tf.gather(users, picked)
        batch_positives = tf.gather(positives, picked)
        batch = {name: tf.gather(table, rows) for name, table in per_row.items()}
        batch["hist_age_days"] = tf.gather(ages, picked)
        batch.update({name: tf.gather(values, batch_users) for name, values in per_user.items()})
        batch.update({name: tf.gather(values, batch_positives) for name, values in per_item.items()})
        batch["numeric"] = tf.gather(numeric, picked)
        batch["log_q"] = tf.gather(log_q, batch_positives)
        batch["positive_row"] = batch_positives
        if liked is not None:
            hits = tf.numpy_function(mask, [batch_users, batch_positives], tf.uint8, stateful=False)
            batch["liked_by_user"] = tf.ensure_shape(hits, [None, None])
        return batch

    return gather


# -- model -----------------------------------------------------------------------------------
class DenseGradientAdam(keras.optimizers.Adam):
    """Adam on each embedding row's whole gradient: the sparse gradient of a lookup is summed per row
    once, before the update (``TrainingConfig.dense_embedding_gradients``).

    An embedding's gradient arrives as ``tf.IndexedSlices``, one slice per lookup (B x 100 for the
    history). Keras' Adam densifies it in each of its operations, and squares the slices before
    summing them: a row looked up n times in a batch got the sum of n squared gradients as its second
    moment, not the square of its gradient. Here every gradient is dense before Adam sees it, which
    is Adam's own update (as for any dense weight) and half the work: on the CPU, summing the slices
    twice is most of a training step."""

    def apply(self, grads, trainable_variables=None):
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        return super().apply(grads, trainable_variables)


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
            # [B, K, ...] -> [B * K, ...] for the tower, and its vectors back to [B, K, D].
            flat = {k: ops.reshape(inputs[f"neg_{k}"], (-1,) + tuple(inputs[f"neg_{k}"].shape[2:]))
                    for k in ITEM_INPUTS}
            negatives = self.item_tower(flat, training=training)
            negatives = ops.reshape(negatives, (-1, self.negatives_per_example, ops.shape(negatives)[-1]))
            return users, positives, negatives
        return users, positives

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The batch's loss, divided by the number of replicas in sync (see losses.replica_mean)."""
        if self.loss_name == "margin":
            users, positives, negatives = y_pred
            return replica_mean(margin_hinge(users, positives, negatives, self.margin))
        users, items = y_pred
        excluded = accidental_hits(x["positive_row"], x.get("liked_by_user"))
        log_q = x["log_q"] if self.logq_correction else None
        return replica_mean(in_batch_softmax(users, items, self.temperature, log_q, excluded))


def learning_rate(config: TrainingConfig, steps_per_epoch: int):
    """The optimizer's learning rate: the configured constant, or its cosine schedule over the
    configured epochs (with a linear warmup from 0 over ``warmup_epochs``)."""
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    total = max(config.epochs * steps_per_epoch, warmup + 1)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total)
    return keras.optimizers.schedules.CosineDecay(0.0, total - warmup, warmup_target=config.learning_rate,
                                                  warmup_steps=warmup)


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


class BestEpochStopping(keras.callbacks.EarlyStopping):
    """Early stopping on validation Recall@50 that keeps the best epoch's weights, whichever epoch
    that was. When to stop is Keras' rule with ``start_from_epoch``: after ``min_epochs``, stop once
    ``patience`` epochs bring no improvement. Keras' own restore only considers the epochs from
    ``min_epochs`` on, so a model whose validation recall peaked earlier (and ``best_epoch`` in the
    stats said so) kept a worse epoch's weights; here the best of all epochs is restored (the first
    on a tie, as ``np.argmax`` of the history reports it)."""

    def __init__(self, patience: int, min_epochs: int, monitor: str = "val_recall_at_50") -> None:
        super().__init__(monitor=monitor, mode="max", patience=patience, restore_best_weights=False,
                         start_from_epoch=min_epochs)
        self.best_value: float | None = None
        self.best_weights_any_epoch: list[np.ndarray] | None = None
        self.best_epoch_any = -1

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.best_value, self.best_weights_any_epoch, self.best_epoch_any = None, None, -1

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and (self.best_value is None or float(value) > self.best_value):
            self.best_value, self.best_epoch_any = float(value), epoch
            self.best_weights_any_epoch = self.model.get_weights()
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self.best_weights_any_epoch is not None:
            self.model.set_weights(self.best_weights_any_epoch)


def early_stopping(config: TrainingConfig) -> BestEpochStopping:
    return BestEpochStopping(config.early_stopping_patience, config.min_epochs)


def training_callbacks(prepared: PreparedTraining, sampler: NegativeSampler | None,
                       config: TrainingConfig) -> list[keras.callbacks.Callback]:
    """Validation recall (and fresh hard negatives) after each epoch, then early stopping on it."""
    return [EpochEvaluation(prepared, sampler), early_stopping(config)]


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
    importance: dict[str, GroupImportance] = field(default_factory=dict)  # per feature group
    prepared: PreparedTraining | None = field(default=None, repr=False)

    @property
    def feature_importance(self) -> dict[str, float]:
        """Each feature group's mean drop in Recall@50 (what the feature_importance table stores)."""
        return {group: value.mean for group, value in self.importance.items()}

    @property
    def feature_importance_std(self) -> dict[str, float]:
        """The standard deviation of each group's drop over the repeated shuffles."""
        return {group: value.std for group, value in self.importance.items()}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(directory / "feature_spec.json")
        self.user_tower.save_weights(directory / "user_tower.weights.h5")
        self.item_tower.save_weights(directory / "item_tower.weights.h5")
        (directory / "training.json").write_text(json.dumps({
            "config": asdict(self.config), "history": self.history, "metrics": self.metrics,
            "baselines": self.baselines, "stats": self.stats, "feature_importance": self.feature_importance,
            "feature_importance_detail": {group: asdict(value) for group, value in self.importance.items()},
        }, indent=2))

    @classmethod
    def load(cls, directory: Path) -> TrainedTwoTower:
        spec = FeatureSpec.load(directory / "feature_spec.json")
        record = json.loads((directory / "training.json").read_text())
        config = TrainingConfig.from_dict(record["config"])
        user_tower, item_tower = build_towers(spec, config.tower)
        user_tower.load_weights(directory / "user_tower.weights.h5")
        item_tower.load_weights(directory / "item_tower.weights.h5")
        detail = record.get("feature_importance_detail")
        if detail is not None:
            importance = {group: GroupImportance(**value) for group, value in detail.items()}
        else:  # written before the shuffles were repeated: one shuffle, no spread
            importance = {group: GroupImportance(float(mean), 0.0, 1)
                          for group, mean in record.get("feature_importance", {}).items()}
        return cls(spec, config, user_tower, item_tower, record["history"], record["metrics"],
                   record["baselines"], record["stats"], importance)


class NoGpuError(ValueError):
    """``distribution: mirrored`` where TensorFlow sees no GPU: training would quietly run on the CPU."""


def _strategy(config: TrainingConfig, require_gpu: bool = True):
    """The default strategy, or MirroredStrategy over every visible GPU. Asked for ``mirrored`` where
    TensorFlow sees no GPU (a CPU-only install, a node without its driver), it stops instead of
    training on the CPU of a GPU node; ``require_gpu=False`` mirrors over whatever devices there are
    (tests split one CPU into logical devices)."""
    import tensorflow as tf

    if config.distribution != "mirrored":
        return tf.distribute.get_strategy()
    if require_gpu and not tf.config.list_physical_devices("GPU"):
        raise NoGpuError(
            "distribution is 'mirrored' but TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is "
            "empty): run the training step in the GPU image (Dockerfile.gpu) on a GPU node, or set distribution "
            "to 'none' to train on the CPU")
    return tf.distribute.MirroredStrategy()


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
    prepare_seconds = time.perf_counter() - started
    n_items = len(prepared.catalogue)
    counts = np.bincount(prepared.train_examples.positive_rows, minlength=n_items).astype(np.float64)
    log_q = np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))
    sampler = None
    if config.loss == "margin":
        sampler = NegativeSampler(prepared.sequences.rows, prepared.popular.scores, config.negative_mix,
                                  config.hard_negative_pool, seed=config.seed)

    strategy = _strategy(config)
    liked = None
    if config.loss == "sampled_softmax" and config.mask_user_likes:
        liked = likes_matrix(prepared.sequences.rows, n_items)
    batches = ExampleBatches(prepared, prepared.train_examples, config.batch_size, log_q, config.seed, sampler,
                             config.negatives_per_example, liked=liked, replicas=strategy.num_replicas_in_sync)
    with strategy.scope():
        user_tower, item_tower = build_towers(prepared.spec, config.tower)
        model = TwoTowerRetrieval(user_tower, item_tower, config)
        adam = DenseGradientAdam if config.dense_embedding_gradients else keras.optimizers.Adam
        model.compile(optimizer=adam(learning_rate(config, len(batches))))
    callbacks = training_callbacks(prepared, sampler, config)
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch_end(epoch, {k: float(v) for k, v in (logs or {}).items()})
        ))
    fit_started = time.perf_counter()
    fit = model.fit(batch_stream(batches), epochs=config.epochs, callbacks=callbacks, verbose=0)
    fit_seconds = time.perf_counter() - fit_started
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    epochs_run = len(history.get("loss", []))

    evaluation_started = time.perf_counter()
    metrics = score_towers(prepared, prepared.spec, lambda x: embed_users(user_tower, x),
                           lambda x: embed_items(item_tower, x))
    baselines_started = time.perf_counter()
    baselines = baseline_metrics(prepared)
    baselines_seconds = time.perf_counter() - baselines_started
    trained = TrainedTwoTower(prepared.spec, config, user_tower, item_tower, history, metrics, baselines, {},
                              prepared=prepared)
    importance_seconds = 0.0
    if importance:
        importance_started = time.perf_counter()
        trained.importance = permutation_importance(
            prepared, lambda x: embed_users(user_tower, x), lambda x: embed_items(item_tower, x),
            repeats=config.importance_repeats, seed=config.seed, max_users=config.importance_users)
        importance_seconds = time.perf_counter() - importance_started
    trained.stats = {
        "replicas": float(strategy.num_replicas_in_sync),
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
        "prepare_seconds": prepare_seconds,
        "fit_seconds": fit_seconds,
        "seconds_per_epoch": fit_seconds / max(epochs_run, 1),
        "examples_per_second": len(prepared.train_examples) * epochs_run / max(fit_seconds, 1e-9),
        # After the fit: the served evaluation, the baselines (popularity, ItemKNN, EASE) and importance.
        "evaluation_seconds": time.perf_counter() - evaluation_started,
        "baselines_seconds": baselines_seconds,
        "importance_seconds": importance_seconds,
        "total_seconds": time.perf_counter() - started,
    }
    return trained
