"""Hyper-parameters of the model and its training: plain data, importable without TensorFlow,
so the code location, the launchpad's config and the CLI never load it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from twotower_pipeline.model.dataset import HoldoutConfig
from twotower_pipeline.model.features import FeatureConfig
from twotower_pipeline.model.negatives import NegativeMix

LOSSES = ("sampled_softmax", "margin")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")

USER_FEATURE_GROUPS = ("history", "categories", "behaviour", "demographics")
ITEM_FEATURE_GROUPS = ("video_id", "categories", "text", "performers", "tags", "numeric")


@dataclass(frozen=True)
class TowerConfig:
    embedding_dim: int = 64
    history_embedding_dim: int = 64
    id_embedding_dim: int = 64
    category_dim: int = 32
    text_dim: int = 128
    bag_dim: int = 32
    hidden_dim: int = 256
    dropout: float = 0.2
    recency_half_life_days: float = 30.0
    # Which of the design document's inputs each tower uses (the rest are accepted and ignored, so
    # every version has the same ONNX inputs); for ablations.
    user_features: tuple[str, ...] = USER_FEATURE_GROUPS
    item_features: tuple[str, ...] = ITEM_FEATURE_GROUPS
    # The user's liked videos are embedded by the item tower's video-id embedding: one table learns
    # from both sides of every like (MovieLens: +0.005 Recall@50).
    share_video_embedding: bool = True
    # Means of the newest N liked videos by position, besides the recency-weighted mean of all: what
    # the user liked just now (MovieLens: Recall@50 0.36 -> 0.39, NDCG@10 0.13 -> 0.15).
    recent_likes: tuple[int, ...] = (1, 3, 10)
    id_path: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_features", tuple(self.user_features))
        object.__setattr__(self, "item_features", tuple(self.item_features))
        object.__setattr__(self, "recent_likes", tuple(self.recent_likes))
        for name, allowed, chosen in (("user_features", USER_FEATURE_GROUPS, self.user_features),
                                      ("item_features", ITEM_FEATURE_GROUPS, self.item_features)):
            unknown = sorted(set(chosen) - set(allowed))
            if unknown or not chosen:
                raise ValueError(f"{name} must be a non-empty subset of {allowed}, got {chosen}")


@dataclass(frozen=True)
class TrainingConfig:
    loss: str = "sampled_softmax"
    epochs: int = 20
    batch_size: int = 512
    learning_rate: float = 0.002
    # "constant", or "cosine": from learning_rate down to 0 over ``epochs`` epochs (the steps early
    # stopping leaves out are never taken), after ``warmup_epochs`` rising linearly from 0 to it.
    learning_rate_schedule: str = "constant"
    warmup_epochs: float = 0.0
    # Adam on each embedding row's summed gradient (see training.DenseGradientAdam) instead of Keras'
    # treatment of sparse gradients: the same training step in about half the time at the default
    # size on the CPU, but a different second moment for rows looked up several times in a batch
    # (MovieLens per-user, one seed: Recall@50 0.403 against 0.418, NDCG@10 0.169 against 0.167).
    dense_embedding_gradients: bool = False
    temperature: float = 0.07
    logq_correction: bool = True
    margin: float = 0.3
    negatives_per_example: int = 4
    negative_mix: NegativeMix = field(default_factory=NegativeMix)
    hard_negative_pool: int = 200
    early_stopping_patience: int = 3
    # Epochs before early stopping may stop: the shared id embeddings need a few to take shape, and a
    # small validation set (a few hundred users) is noisy.
    min_epochs: int = 5
    seed: int = 42
    # "none": the default device(s); "mirrored": tf.distribute.MirroredStrategy over every visible GPU
    # (the batch is split across replicas, so the in-batch negatives are per replica).
    distribution: str = "none"
    min_training_examples: int = 100
    # In-batch softmax: a video the example's user liked (any of their training likes) that is
    # another example's positive in the batch is not a negative for them, like a repeated video.
    mask_user_likes: bool = True
    # Permutation importance: each feature group shuffled this many times (mean and spread reported),
    # scored on this many held-out users.
    importance_repeats: int = 5
    importance_users: int = 500
    tower: TowerConfig = field(default_factory=TowerConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.learning_rate_schedule not in LEARNING_RATE_SCHEDULES:
            raise ValueError(f"learning_rate_schedule must be one of {LEARNING_RATE_SCHEDULES}, "
                             f"got {self.learning_rate_schedule!r}")
        if not 0.0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be at least 0 and below epochs ({self.epochs}), "
                             f"got {self.warmup_epochs}")
        if self.distribution not in ("none", "mirrored"):
            raise ValueError(f"distribution must be 'none' or 'mirrored', got {self.distribution!r}")
        if self.importance_repeats < 1 or self.importance_users < 1:
            raise ValueError("importance_repeats and importance_users must be at least 1, got "
                             f"{self.importance_repeats} and {self.importance_users}")

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
