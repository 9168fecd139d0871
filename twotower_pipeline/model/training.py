"""Training the two towers, and scoring them on the holdout next to strong baselines.

Two losses, selected by ``TrainingConfig.loss``:

- ``sampled_softmax``: in-batch sampled softmax with logQ correction (Yi et al., 2019). Every
  other positive of the batch is a negative, and each logit is corrected by the log of how often
  its video is sampled as a positive, so popular videos are not pushed down for being frequent
  negatives.
- ``margin``: the design document's contrastive loss, max(0, margin - s(u, pos) + s(u, neg)),
  with negatives drawn 60% at random, 30% hard (highest-scored not-liked, refreshed per epoch)
  and 10% popular-not-liked.

Training is standard Keras ``fit``; early stopping watches Recall@50 of each user's last
training like (the validation set), so both losses are judged by the same measure.
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
from keras import ops

from twotower_pipeline.model.dataset import (
    Examples,
    HoldoutConfig,
    TemporalSplit,
    UserSequences,
    next_like_examples,
    temporal_holdout,
)
from twotower_pipeline.model.evaluation import (
    RECALL_K,
    HoldoutUsers,
    evaluate_ranker,
    item_knn_scores,
    popularity_scores,
    top_k_by_vectors,
    vector_scores,
)
from twotower_pipeline.model.features import (
    ITEM_INPUTS,
    USER_INPUTS,
    Demographics,
    FeatureConfig,
    FeatureSpec,
    HistoryTables,
    fit_feature_spec,
    item_features,
    latest_histories,
    popularity_counts,
)
from twotower_pipeline.model.negatives import NegativeMix, NegativeSampler
from twotower_pipeline.model.towers import TowerConfig, build_item_tower, build_user_tower

EpochCallback = Callable[[int, dict[str, float]], None]
LOSSES = ("sampled_softmax", "margin")


class TrainingDataError(ValueError):
    """The likes cannot train a model; the message says which rule and what to do."""


@dataclass(frozen=True)
class TrainingConfig:
    loss: str = "sampled_softmax"
    epochs: int = 20
    batch_size: int = 512
    learning_rate: float = 0.002
    temperature: float = 0.07
    logq_correction: bool = True
    margin: float = 0.3
    negatives_per_example: int = 4
    negative_mix: NegativeMix = field(default_factory=NegativeMix)
    hard_negative_pool: int = 200
    early_stopping_patience: int = 3
    seed: int = 42
    # "none": the default device(s); "mirrored": tf.distribute.MirroredStrategy over every visible GPU
    # (the batch is split across replicas, so the in-batch negatives are per replica).
    distribution: str = "none"
    min_training_examples: int = 100
    tower: TowerConfig = field(default_factory=TowerConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.distribution not in ("none", "mirrored"):
            raise ValueError(f"distribution must be 'none' or 'mirrored', got {self.distribution!r}")

    def flat_params(self) -> dict[str, object]:
        """Every hyper-parameter as one flat mapping (for MLflow params)."""
        flat: dict[str, object] = {}
        for key, value in asdict(self).items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat

    @classmethod
    def from_dict(cls, raw: dict) -> TrainingConfig:
        nested = {"tower": TowerConfig, "holdout": HoldoutConfig, "features": FeatureConfig,
                  "negative_mix": NegativeMix}
        return cls(**{k: nested[k](**v) if k in nested else v for k, v in raw.items()})


# -- data ------------------------------------------------------------------------------------
@dataclass
class PreparedTraining:
    """Everything derived from one snapshot of catalogue and likes, shared by training, the
    evaluation of this model, of its baselines and of the champion."""

    catalogue: pd.DataFrame
    split: TemporalSplit
    reference_time: pd.Timestamp
    spec: FeatureSpec
    popularity: np.ndarray
    items: dict[str, np.ndarray]
    tables: HistoryTables
    sequences: UserSequences
    train_examples: Examples
    validation_examples: Examples
    holdout: HoldoutUsers
    holdout_times: list[np.ndarray]  # epoch seconds of each held-out like, aligned with holdout.relevant
    holdout_users: np.ndarray
    holdout_rows: np.ndarray
    holdout_ages: np.ndarray
    item_genres: np.ndarray
    profiles: pd.DataFrame | None
    demographics: Demographics

    def holdout_user_inputs(self, spec: FeatureSpec | None = None) -> dict[str, np.ndarray]:
        """Inputs of the held-out users, prepared with this training's feature spec or another's."""
        if spec is None or spec is self.spec:
            return self.tables.user_inputs(self.holdout_rows, self.holdout_ages,
                                           self.demographics.take(self.holdout_users))
        tables = HistoryTables.from_catalogue(spec, self.catalogue)
        users = self.sequences.user_ids[self.holdout_users]
        return tables.user_inputs(self.holdout_rows, self.holdout_ages,
                                  Demographics.lookup(spec, users, self.profiles))


def attach_catalogue_rows(catalogue: pd.DataFrame, likes: pd.DataFrame) -> pd.DataFrame:
    """likes with a ``row`` column (position of the video in the catalogue); unknown videos dropped."""
    position = pd.Series(np.arange(len(catalogue)), index=catalogue["id"].to_numpy())
    rows = likes["video_id"].map(position)
    out = likes[rows.notna()].copy()
    out["row"] = rows[rows.notna()].astype(np.int64).to_numpy()
    return out


def prepare_training(catalogue: pd.DataFrame, likes: pd.DataFrame, config: TrainingConfig,
                     profiles: pd.DataFrame | None = None) -> PreparedTraining:
    catalogue = catalogue.reset_index(drop=True)
    split = temporal_holdout(attach_catalogue_rows(catalogue, likes), config.holdout)
    if split.train.empty:
        raise TrainingDataError("the training window holds no likes of catalogue videos; nothing to train on")
    reference = split.train_end + pd.Timedelta(seconds=1)
    training_users = split.train["user_id"].unique()
    if profiles is not None:
        profiles = profiles[profiles["user_id"].isin(training_users)]
    spec = fit_feature_spec(catalogue, split.train, reference, config.features, profiles)
    popularity = popularity_counts(catalogue["id"], split.train, reference)
    items = item_features(spec, catalogue, popularity, reference)
    tables = HistoryTables.from_catalogue(spec, catalogue)
    sequences = UserSequences.from_likes(split.train)
    examples = next_like_examples(sequences, tables.pad_row, spec.history_length)
    train_examples, validation_examples = examples.subset(~examples.is_last), examples.subset(examples.is_last)
    if len(train_examples) < config.min_training_examples:
        raise TrainingDataError(
            f"only {len(train_examples)} training examples (likes that follow an earlier like of the same "
            f"user) in the training window; at least {config.min_training_examples} are needed: wait for more "
            "likes or lower min_training_examples"
        )

    # Held-out users, with their history as of their first held-out like.
    test_by_user = split.test.groupby("user_id")
    held = np.array([u for u, user in enumerate(sequences.user_ids) if user in test_by_user.groups], dtype=np.int64)
    relevant = [test_by_user.get_group(sequences.user_ids[u])["row"].to_numpy() for u in held]
    relevant_times = [test_by_user.get_group(sequences.user_ids[u])["created_at"].astype("int64").to_numpy() / 1e9
                      for u in held]
    first_test = np.array([test_by_user.get_group(sequences.user_ids[u])["created_at"].min().value / 1e9
                           for u in held], dtype=np.float64)
    rows, ages = latest_histories([sequences.rows[u] for u in held], [sequences.times[u] for u in held],
                                  first_test, tables.pad_row, spec.history_length)
    return PreparedTraining(
        catalogue=catalogue, split=split, reference_time=reference, spec=spec, popularity=popularity,
        items=items, tables=tables, sequences=sequences, train_examples=train_examples,
        validation_examples=validation_examples,
        holdout=HoldoutUsers(seen=[sequences.rows[u] for u in held], relevant=relevant),
        holdout_times=relevant_times,
        holdout_users=held, holdout_rows=rows, holdout_ages=ages,
        item_genres=pd.factorize(catalogue["genre"].fillna(""))[0],
        profiles=profiles, demographics=Demographics.lookup(spec, sequences.user_ids, profiles),
    )


class ExampleBatches(keras.utils.PyDataset):
    """Batches of (history -> next like) examples, reshuffled (and negatives redrawn) every epoch."""

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
        batch["log_q"] = self.log_q[positives]
        batch["positive_row"] = positives
        if self.sampler is not None:
            negatives = self.sampler.sample(self.examples.users[picked], self.negatives_per_example).reshape(-1)
            batch.update({f"neg_{name}": self.prepared.items[name][negatives] for name in ITEM_INPUTS})
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
            latest, ages = latest_histories(p.sequences.rows, p.sequences.times,
                                            np.array([t[-1] + 1 for t in p.sequences.times]), p.tables.pad_row,
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
        user_tower = build_user_tower(spec, config.tower)
        item_tower = build_item_tower(spec, config.tower)
        user_tower.load_weights(directory / "user_tower.weights.h5")
        item_tower.load_weights(directory / "item_tower.weights.h5")
        return cls(spec, config, user_tower, item_tower, record["history"], record["metrics"],
                   record["baselines"], record["stats"], record.get("feature_importance", {}))


@dataclass(frozen=True)
class HoldoutSlice:
    """Some of the held-out users, and of their held-out likes (e.g. those after a cutoff)."""

    users: np.ndarray  # indices into prepared.holdout
    holdout: HoldoutUsers


def held_out_after(prepared: PreparedTraining, cutoff: pd.Timestamp) -> HoldoutSlice:
    """The held-out likes made after ``cutoff``: likes a model trained up to the cutoff never saw."""
    seconds = cutoff.value / 1e9
    users, seen, relevant = [], [], []
    for u, (rows, times) in enumerate(zip(prepared.holdout.relevant, prepared.holdout_times)):
        later = rows[times > seconds]
        if len(later):
            users.append(u)
            seen.append(prepared.holdout.seen[u])
            relevant.append(later)
    return HoldoutSlice(np.asarray(users, dtype=np.int64), HoldoutUsers(seen, relevant))


def score_towers(prepared: PreparedTraining, spec: FeatureSpec,
                 user_vectors_of: Callable[[dict[str, np.ndarray]], np.ndarray],
                 item_vectors_of: Callable[[dict[str, np.ndarray]], np.ndarray],
                 held_out: HoldoutSlice | None = None) -> dict[str, float]:
    """Metrics of any pair of towers (this model, or the champion with its own feature spec)
    on this training's holdout, or on a slice of it."""
    items = prepared.items if spec is prepared.spec else item_features(
        spec, prepared.catalogue, prepared.popularity, prepared.reference_time)
    inputs = prepared.holdout_user_inputs(spec)
    holdout = prepared.holdout
    if held_out is not None:
        inputs = {name: values[held_out.users] for name, values in inputs.items()}
        holdout = held_out.holdout
    return evaluate_ranker(vector_scores(user_vectors_of(inputs), item_vectors_of(items)), holdout,
                           prepared.item_genres)


def baseline_metrics(prepared: PreparedTraining) -> dict[str, dict[str, float]]:
    train_seen = prepared.sequences.rows
    return {
        "popularity": evaluate_ranker(popularity_scores(prepared.popularity), prepared.holdout,
                                      prepared.item_genres),
        "item_knn": evaluate_ranker(item_knn_scores(train_seen, prepared.holdout.seen, len(prepared.catalogue)),
                                    prepared.holdout, prepared.item_genres),
    }


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
    """Drop in Recall@50 when one feature group is shuffled across users (or videos)."""
    rng = np.random.default_rng(seed)
    users = np.sort(rng.permutation(len(prepared.holdout))[:max_users])
    holdout = prepared.holdout.subset(users)
    user_inputs = {k: v[users] for k, v in prepared.holdout_user_inputs().items()}
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
        order = rng.permutation(len(next(iter(source.values()))))
        for name in names:
            if column is None:
                shuffled[name] = source[name][order]
            else:
                values = source[name].copy()
                values[:, column] = values[order, column]
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
) -> TrainedTwoTower:
    """Train on all but each user's most recent likes; score on those against the baselines."""
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    prepared = prepare_training(catalogue, likes, config, profiles)
    n_items = len(prepared.catalogue)
    counts = np.bincount(prepared.train_examples.positive_rows, minlength=n_items).astype(np.float64)
    log_q = np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))
    sampler = None
    if config.loss == "margin":
        sampler = NegativeSampler(prepared.sequences.rows, counts, config.negative_mix, config.hard_negative_pool,
                                  seed=config.seed)

    with _strategy(config).scope():
        user_tower = build_user_tower(prepared.spec, config.tower)
        item_tower = build_item_tower(prepared.spec, config.tower)
        model = TwoTowerRetrieval(user_tower, item_tower, config)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    callbacks: list[keras.callbacks.Callback] = [
        EpochEvaluation(prepared, sampler),
        keras.callbacks.EarlyStopping(monitor="val_recall_at_50", mode="max",
                                      patience=config.early_stopping_patience, restore_best_weights=True),
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
