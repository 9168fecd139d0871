"""The two-tower model: training with an MLflow run, served metrics against the baselines, and the
ONNX towers. The champion is compared with by the promotion gate (serving.py), on ONNX for both."""


import math
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import dagster as dg
import numpy as np
from pydantic import Field

from twotower_pipeline import vector_store
from twotower_pipeline.assets import (
    OWNERS,
    TRAINING_POOL,
    TRANSIENT_RETRIES,
    disk_full_is_final,
    retries_only_transient,
)
from twotower_pipeline.assets.artifacts import ModelArtifacts, OnnxTowers
from twotower_pipeline.model.config import TowerConfig, TrainingConfig
from twotower_pipeline.model.dataset import HoldoutConfig
from twotower_pipeline.model.negatives import NegativeMix
from twotower_pipeline.model.preparation import TrainingDataError
from twotower_pipeline.reporting import (
    REPORTED_METRICS,
    importance_png,
    loss_curve_png,
    markdown_image,
    metrics_table,
    png_to_array,
)
from twotower_pipeline.resources import AppDatabase, MlflowTracking, ModelStore
from twotower_pipeline.validation import TrainingData

if TYPE_CHECKING:  # TensorFlow loads in the steps that train or export, never with the code location
    from twotower_pipeline.model.export import ExportedTower
    from twotower_pipeline.model.training import TrainedTwoTower

GROUP = "model"
MAX_ONNX_BYTES = 50 * 1024 * 1024
MAX_PARITY_DIFF = 1e-4


_DEFAULTS = TrainingConfig()


class TrainingRunConfig(dg.Config):
    """Hyper-parameters; editable in the launchpad for a one-off run. Defaults: ``TrainingConfig``'s; the
    bounds refuse a value that cannot train (checked when the step starts, before it trains)."""

    loss: Literal["sampled_softmax", "margin"] = _DEFAULTS.loss  # "margin": the design document's contrastive loss
    epochs: int = Field(_DEFAULTS.epochs, ge=1, le=1_000)
    batch_size: int = Field(_DEFAULTS.batch_size, ge=2, le=1_000_000)  # in-batch negatives need two
    learning_rate: float = Field(_DEFAULTS.learning_rate, gt=0.0, le=10.0)
    # "cosine": from learning_rate to 0 over the epochs, after warmup_epochs rising to it.
    learning_rate_schedule: Literal["constant", "cosine"] = _DEFAULTS.learning_rate_schedule
    warmup_epochs: float = Field(_DEFAULTS.warmup_epochs, ge=0.0)
    dense_embedding_gradients: bool = _DEFAULTS.dense_embedding_gradients  # faster; see TrainingConfig
    temperature: float = Field(_DEFAULTS.temperature, gt=0.0)
    logq_correction: bool = _DEFAULTS.logq_correction
    margin: float = Field(_DEFAULTS.margin, ge=0.0)
    negatives_per_example: int = Field(_DEFAULTS.negatives_per_example, ge=1)
    random_negatives: float = Field(_DEFAULTS.negative_mix.random, ge=0.0, le=1.0)
    hard_negatives: float = Field(_DEFAULTS.negative_mix.hard, ge=0.0, le=1.0)
    popular_negatives: float = Field(_DEFAULTS.negative_mix.popular, ge=0.0, le=1.0)
    hard_negative_pool: int = Field(_DEFAULTS.hard_negative_pool, ge=1)
    early_stopping_patience: int = Field(_DEFAULTS.early_stopping_patience, ge=1)
    embedding_dim: int = Field(_DEFAULTS.tower.embedding_dim, ge=1)
    dropout: float = Field(_DEFAULTS.tower.dropout, ge=0.0, lt=1.0)
    holdout_fraction: float = Field(_DEFAULTS.holdout.holdout_fraction, gt=0.0, lt=1.0)
    seed: int = _DEFAULTS.seed
    feature_importance: bool = True
    distribution: Literal["none", "mirrored"] = _DEFAULTS.distribution  # "mirrored": every visible GPU
    # Which of the design document's inputs the towers use (ablations; the defaults use them all).
    user_features: list[str] = list(_DEFAULTS.tower.user_features)
    item_features: list[str] = list(_DEFAULTS.tower.item_features)

    def to_training_config(self) -> TrainingConfig:
        return TrainingConfig(
            loss=self.loss,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            learning_rate_schedule=self.learning_rate_schedule,
            warmup_epochs=self.warmup_epochs,
            dense_embedding_gradients=self.dense_embedding_gradients,
            temperature=self.temperature,
            logq_correction=self.logq_correction,
            margin=self.margin,
            negatives_per_example=self.negatives_per_example,
            negative_mix=NegativeMix(self.random_negatives, self.hard_negatives, self.popular_negatives),
            hard_negative_pool=self.hard_negative_pool,
            early_stopping_patience=self.early_stopping_patience,
            seed=self.seed,
            distribution=self.distribution,
            tower=TowerConfig(embedding_dim=self.embedding_dim, dropout=self.dropout,
                              user_features=tuple(self.user_features), item_features=tuple(self.item_features)),
            holdout=HoldoutConfig(holdout_fraction=self.holdout_fraction),
        )


def new_version(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("tt-%Y%m%d-%H%M%S")


@dg.asset(
    group_name=GROUP,
    kinds={"tensorflow", "mlflow"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    description="Two-tower model (user and item towers, 64-d, dot-product score) trained on the likes "
    "window. Evaluated as it will be served: each user's most recent likes are held out, and what "
    "recommend_videos would return without them (the same user vectors, item vectors, exclusions and "
    "cold-start lists as publishing writes) is scored against popularity, ItemKNN and EASE, with "
    "permutation feature importance. One MLflow run per training.",
    pool=TRAINING_POOL,
    check_specs=[dg.AssetCheckSpec(
        "model_quality", asset="two_tower_model", blocking=True,
        description="Metrics are finite and what would be served beats popularity on Recall@50 (same "
        "held-out likes); a warning when it is below ItemKNN.",
    )],
)
@retries_only_transient
def two_tower_model(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    training_data: TrainingData,
    mlflow_tracking: MlflowTracking,
    model_store: ModelStore,
):
    import mlflow

    from twotower_pipeline.model.training import train_two_tower

    version = new_version()
    training_config = config.to_training_config()
    with mlflow.start_run(experiment_id=mlflow_tracking.experiment_id(), run_name=version) as run:
        mlflow.set_tags({"twotower.version": version, "dagster.run_id": context.run.run_id})
        mlflow.log_params(training_config.flat_params())

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            mlflow.log_metrics({f"epoch_{k}": v for k, v in logs.items()}, step=epoch)
            context.log.info(f"epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4f}" for k, v in logs.items()))

        try:
            trained = train_two_tower(training_data.catalogue, training_data.likes, training_config, on_epoch_end,
                                      importance=config.feature_importance, profiles=training_data.profiles,
                                      as_of=training_data.as_of, window_days=training_data.window_days)
        except (TrainingDataError, ValueError) as error:
            mlflow.set_tag("twotower.failure", str(error))
            raise dg.Failure(f"training stopped: {error}", allow_retries=False) from error
        directory = model_store.version_dir(version)
        with disk_full_is_final(f"the model store ({directory})"):
            trained.save(directory)
        mlflow.log_metrics({k: v for k, v in trained.metrics.items() if math.isfinite(v)})
        for baseline, values in trained.baselines.items():
            mlflow.log_metrics({f"{baseline}_{k}": v for k, v in values.items()})
        mlflow.log_metrics({f"data_{k}": v for k, v in trained.stats.items()})
        mlflow.log_metrics({f"importance.{_metric_name(k)}": v for k, v in trained.feature_importance.items()})
        mlflow.log_metrics({f"importance_sd.{_metric_name(k)}": v for k, v in trained.feature_importance_std.items()})
        curve = loss_curve_png(trained.history)
        mlflow.log_image(png_to_array(curve), "loss_curve.png")
        if trained.feature_importance:
            mlflow.log_image(png_to_array(importance_png(trained.importance)), "feature_importance.png")
        mlflow.log_artifact(str(directory / "training.json"))
        mlflow.log_artifact(str(directory / "feature_spec.json"))
        run_id = run.info.run_id

    with disk_full_is_final(f"the model store ({model_store.base_path})"):
        location = model_store.publish(version)
    artifacts = ModelArtifacts(version, location, run_id, trained.metrics, trained.baselines,
                               trained.stats, trained.feature_importance, asdict(training_config))
    metadata = {
        "version": dg.MetadataValue.text(version),
        "loss": dg.MetadataValue.text(training_config.loss),
        "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_link(run_id)),
        "metrics": dg.MetadataValue.md(metrics_table(trained.metrics, trained.baselines)),
        "loss_curve": dg.MetadataValue.md(markdown_image(curve, "loss curve")),
        "cold_start": dg.MetadataValue.text(_cold_start_note(trained)),
    }
    if trained.feature_importance:
        metadata["feature_importance"] = dg.MetadataValue.md(markdown_image(importance_png(trained.importance), "feature importance"))
    metadata.update({k: dg.MetadataValue.float(float(v)) for k, v in trained.metrics.items()})
    for baseline, values in trained.baselines.items():
        metadata.update({f"{baseline}_{k}": dg.MetadataValue.float(float(v)) for k, v in values.items()
                         if k in REPORTED_METRICS})
    metadata.update({k: dg.MetadataValue.float(float(v)) for k, v in trained.stats.items()})
    yield dg.Output(artifacts, metadata=metadata)

    yield model_quality_result(trained.metrics, trained.baselines)
    for warning in model_warnings(trained.metrics, trained.baselines):
        context.log.warning(warning)


def model_quality_result(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> dg.AssetCheckResult:
    """Blocking: what would be served beats popularity on Recall@50, on the same held-out likes.
    ItemKNN and EASE are shown beside it, with a warning (not a block) when the model is below ItemKNN."""
    model_score = metrics["recall_at_50"]
    baseline_score = baselines["popularity"]["recall_at_50"]
    finite = all(math.isfinite(v) for v in metrics.values())
    passed = finite and model_score > baseline_score
    description = (f"served Recall@50 {model_score:.4f} vs popularity {baseline_score:.4f} on the same held-out likes"
                   + ("" if passed else ": the model does not beat popularity; it will not be exported or activated"))
    warnings = model_warnings(metrics, baselines)
    if warnings:
        description += "; WARNING: " + "; ".join(warnings)
    metadata = {
        "recall_at_50": dg.MetadataValue.float(model_score),
        "popularity_recall_at_50": dg.MetadataValue.float(baseline_score),
        "metrics_finite": dg.MetadataValue.bool(finite),
        "below_item_knn": dg.MetadataValue.bool(bool(warnings)),
    }
    metadata.update({f"{name}_recall_at_50": dg.MetadataValue.float(values["recall_at_50"])
                     for name, values in baselines.items() if name != "popularity"})
    return dg.AssetCheckResult(check_name="model_quality", passed=passed, description=description, metadata=metadata)


def model_warnings(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> list[str]:
    knn = baselines.get("item_knn", {}).get("recall_at_50")
    if knn is not None and metrics["recall_at_50"] < knn:
        return [f"served Recall@50 {metrics['recall_at_50']:.4f} is below ItemKNN's {knn:.4f}: the likes hold "
                "item-to-item structure the model does not use (try more epochs or the id inputs alone)"]
    return []


def _cold_start_note(trained: "TrainedTwoTower") -> str:
    spec = trained.spec
    segments = ("overall order for everyone (demographic segments did not help the newest users)"
                if spec.segment_prior_likes is None else
                f"demographic segments, each weighed against {spec.segment_prior_likes:g} likes of the whole app")
    tried = trained.prepared.cold_start_scores if trained.prepared is not None else {}
    shown = ", ".join(f"{name} {recall:.3f}" for name, recall in sorted(tried.items(), key=lambda item: -item[1])[:4])
    return (f"users without likes: likes decayed with a {spec.popularity_half_life_days:g}-day half-life, {segments}"
            + (f"; newest users' Recall@50 by choice: {shown}" if shown else "; too few new users to choose: defaults"))


def _metric_name(group: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in group).strip("_")


def parity_samples(trained: "TrainedTwoTower", size: int = 256, seed: int = 0) -> tuple[dict, dict]:
    """Realistic tower inputs for the parity check: random ids and histories with padding."""
    rng = np.random.default_rng(seed)
    record = trained.spec
    n_videos = max(record.videos.size, 3)
    history = {
        "hist_video_idx": rng.integers(0, n_videos, (size, record.history_length)),
        "hist_genre_idx": rng.integers(0, record.genres.size, (size, record.history_length)),
        "hist_maker_idx": rng.integers(0, record.makers.size, (size, record.history_length)),
        "hist_price": rng.normal(size=(size, record.history_length)).astype(np.float32),
        "hist_age_days": rng.uniform(0, 180, (size, record.history_length)).astype(np.float32),
        "user_age_range_idx": rng.integers(0, record.age_ranges.size, size),
        "user_region_idx": rng.integers(0, record.regions.size, size),
    }
    history["hist_video_idx"][:, : record.history_length // 2] = 0  # padded front, as in real histories
    item_shapes = {name: tuple(t.shape[1:]) for name, t in trained.item_tower.input.items()}
    items = {
        "video_idx": rng.integers(0, n_videos, size),
        "genre_idx": rng.integers(0, record.genres.size, size),
        "maker_idx": rng.integers(0, record.makers.size, size),
        "performer_idx": rng.integers(0, record.performers.size, (size, *item_shapes["performer_idx"])),
        "tag_idx": rng.integers(0, record.tags.size, (size, *item_shapes["tag_idx"])),
        "text_idx": rng.integers(0, record.text_size, (size, *item_shapes["text_idx"])),
        "text_weight": rng.uniform(0, 0.5, (size, *item_shapes["text_weight"])).astype(np.float32),
        "numeric": rng.normal(size=(size, *item_shapes["numeric"])).astype(np.float32),
    }
    return history, items


@dg.asset(
    group_name=GROUP,
    kinds={"onnx", "mlflow"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    description="Both towers exported with tf2onnx, checked against TensorFlow in ONNX Runtime, "
    "registered in MLflow (alias 'candidate') and recorded as a candidate model version with its "
    "feature importance.",
    check_specs=[dg.AssetCheckSpec(
        "onnx_parity", asset="onnx_towers", blocking=True,
        description=f"ONNX Runtime matches TensorFlow within {MAX_PARITY_DIFF} and each file is <= 50 MB.",
    )],
)
@retries_only_transient
def onnx_towers(
    context: dg.AssetExecutionContext,
    two_tower_model: ModelArtifacts,
    mlflow_tracking: MlflowTracking,
    app_db: AppDatabase,
    model_store: ModelStore,
):
    import mlflow
    import onnx

    from twotower_pipeline.model.export import export_and_check

    trained = two_tower_model.load(model_store)
    directory = model_store.version_dir(two_tower_model.version)
    if not (directory / "feature_spec.json").exists():
        trained.spec.save(directory / "feature_spec.json")
    user_sample, item_sample = parity_samples(trained)
    with disk_full_is_final(f"the model store ({directory})"):
        user = export_and_check(trained.user_tower, directory / "user_tower.onnx", user_sample)
        item = export_and_check(trained.item_tower, directory / "item_tower.onnx", item_sample)
        location = model_store.publish(two_tower_model.version)
    problems = [
        f"{name}: {problem}"
        for name, tower in (("user tower", user), ("item tower", item))
        for problem in _export_problems(tower)
    ]
    passed = not problems
    registered: dict[str, str] = {}
    if passed:
        names = mlflow_tracking.tower_model_names()
        mlflow_tracking.client()  # this step may run in its own process: point MLflow at the store
        with mlflow.start_run(run_id=two_tower_model.mlflow_run_id):
            for kind, tower in (("user_tower", user), ("item_tower", item)):
                info = mlflow.onnx.log_model(onnx.load(str(tower.path)), name=kind, registered_model_name=names[kind])
                registered[kind] = str(info.registered_model_version)
                mlflow_tracking.client().set_model_version_tag(
                    names[kind], registered[kind], "twotower.version", two_tower_model.version)
            mlflow.log_metrics({"onnx_user_tower_max_abs_diff": user.max_abs_diff,
                                "onnx_item_tower_max_abs_diff": item.max_abs_diff,
                                "onnx_user_tower_mb": user.size_bytes / 1e6,
                                "onnx_item_tower_mb": item.size_bytes / 1e6})
        mlflow_tracking.set_alias(two_tower_model.version, "candidate")
        with app_db.connect() as conn:
            vector_store.register_version(
                conn,
                two_tower_model.version,
                [vector_store.TowerRecord("user_tower", f"{location}/user_tower.onnx", registered["user_tower"]),
                 vector_store.TowerRecord("item_tower", f"{location}/item_tower.onnx", registered["item_tower"])],
                feature_spec_path=f"{location}/feature_spec.json",
                mlflow_run_id=two_tower_model.mlflow_run_id,
                metrics={**two_tower_model.metrics, **{
                    f"{baseline}_{name}": value
                    for baseline, values in two_tower_model.baselines.items() for name, value in values.items()
                }},
                feature_importance=two_tower_model.feature_importance,
            )
            vector_store.create_version_partitions(conn, two_tower_model.version)

    yield dg.Output(
        OnnxTowers(
            version=two_tower_model.version,
            user_tower_path=f"{location}/user_tower.onnx",
            item_tower_path=f"{location}/item_tower.onnx",
            feature_spec_path=f"{location}/feature_spec.json",
            mlflow_run_id=two_tower_model.mlflow_run_id,
            metrics=two_tower_model.metrics,
            training_config=two_tower_model.training_config,
        ),
        metadata={
            "version": dg.MetadataValue.text(two_tower_model.version),
            "user_tower_mb": dg.MetadataValue.float(user.size_bytes / 1e6),
            "item_tower_mb": dg.MetadataValue.float(item.size_bytes / 1e6),
            "user_tower_max_abs_diff": dg.MetadataValue.float(user.max_abs_diff),
            "item_tower_max_abs_diff": dg.MetadataValue.float(item.max_abs_diff),
            "mlflow_model_versions": dg.MetadataValue.json(registered),
            "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_link(two_tower_model.mlflow_run_id)),
        },
    )
    yield dg.AssetCheckResult(
        check_name="onnx_parity",
        passed=passed,
        description="; ".join(problems) if problems else "both towers match TensorFlow",
        metadata={
            "user_tower_max_abs_diff": dg.MetadataValue.float(user.max_abs_diff),
            "item_tower_max_abs_diff": dg.MetadataValue.float(item.max_abs_diff),
            "threshold": dg.MetadataValue.float(MAX_PARITY_DIFF),
            "checked_rows": dg.MetadataValue.int(user.checked_rows),
        },
    )


def _export_problems(tower: "ExportedTower") -> list[str]:
    problems = []
    if not math.isfinite(tower.max_abs_diff) or tower.max_abs_diff > MAX_PARITY_DIFF:
        problems.append(f"max |ONNX - TF| = {tower.max_abs_diff:.2e} exceeds {MAX_PARITY_DIFF:.0e}")
    if tower.size_bytes > MAX_ONNX_BYTES:
        problems.append(f"{tower.size_bytes / 1e6:.1f} MB exceeds the 50 MB limit of the Edge Functions")
    return problems
