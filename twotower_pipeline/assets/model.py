"""The two-tower model: training with an MLflow run, offline metrics, and the ONNX towers."""


import base64
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np

from twotower_pipeline import vector_store
from twotower_pipeline.model.dataset import HoldoutConfig
from twotower_pipeline.model.export import ExportedTower, export_and_check
from twotower_pipeline.model.towers import TowerConfig
from twotower_pipeline.model.training import (
    TrainedTwoTower,
    TrainingConfig,
    train_two_tower,
)
from twotower_pipeline.resources import AppDatabase, MlflowTracking, ModelStore
from twotower_pipeline.validation import TrainingData

GROUP = "model"
MAX_ONNX_BYTES = 50 * 1024 * 1024
MAX_PARITY_DIFF = 1e-4
PRIMARY_METRIC = "recall_at_50"


class TrainingRunConfig(dg.Config):
    """Hyper-parameters; editable in the launchpad for a one-off run."""

    epochs: int = 15
    batch_size: int = 512
    learning_rate: float = 0.002
    temperature: float = 0.07
    logq_correction: bool = True
    early_stopping_patience: int = 2
    embedding_dim: int = 64
    dropout: float = 0.2
    holdout_fraction: float = 0.2
    seed: int = 42

    def to_training_config(self) -> TrainingConfig:
        return TrainingConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            temperature=self.temperature,
            logq_correction=self.logq_correction,
            early_stopping_patience=self.early_stopping_patience,
            seed=self.seed,
            tower=TowerConfig(embedding_dim=self.embedding_dim, dropout=self.dropout),
            holdout=HoldoutConfig(holdout_fraction=self.holdout_fraction),
        )


@dataclass
class ModelArtifacts:
    """A trained version: where its files are and how it scored."""

    version: str
    directory: str
    mlflow_run_id: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    stats: dict[str, float] = field(default_factory=dict)

    def load(self) -> TrainedTwoTower:
        return TrainedTwoTower.load(Path(self.directory))


@dataclass
class OnnxTowers:
    version: str
    user_tower_path: str
    item_tower_path: str
    feature_spec_path: str
    mlflow_run_id: str
    metrics: dict[str, float]


def new_version(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("tt-%Y%m%d-%H%M%S")


def loss_curve_png(history: dict[str, list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    for key, values in sorted(history.items()):
        ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("in-batch softmax loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _metrics_table(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> str:
    names = ["recall_at_50", "precision_at_10", "ndcg_at_10", "coverage_at_10"]
    header = "| metric | two-tower | " + " | ".join(baselines) + " |"
    lines = [header, "|---" * (2 + len(baselines)) + "|"]
    for name in names:
        cells = [f"{metrics.get(name, float('nan')):.4f}"] + [f"{b.get(name, float('nan')):.4f}" for b in baselines.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dg.asset(
    group_name=GROUP,
    kinds={"tensorflow", "mlflow"},
    owners=["team:ml-platform"],
    description="Two-tower model (user and item towers, 64-d, dot-product score) trained on the likes "
    "window with an in-batch softmax (logQ-corrected), scored on each user's most recent likes "
    "against a popularity baseline. One MLflow run per training.",
    check_specs=[dg.AssetCheckSpec(
        "model_quality", asset="two_tower_model", blocking=True,
        description="Metrics are finite and the model beats the popularity baseline on Recall@50.",
    )],
)
def two_tower_model(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    training_data: TrainingData,
    mlflow_tracking: MlflowTracking,
    model_store: ModelStore,
):
    import mlflow

    version = new_version()
    training_config = config.to_training_config()
    with mlflow.start_run(experiment_id=mlflow_tracking.experiment_id(), run_name=version) as run:
        mlflow.set_tags({"twotower.version": version, "dagster.run_id": context.run.run_id})
        mlflow.log_params(training_config.flat_params())

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            mlflow.log_metrics({f"epoch_{k}": v for k, v in logs.items()}, step=epoch)
            context.log.info(f"epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4f}" for k, v in logs.items()))

        trained = train_two_tower(training_data.catalogue, training_data.likes, training_config, on_epoch_end)
        directory = model_store.version_dir(version)
        trained.save(directory)
        mlflow.log_metrics({k: v for k, v in trained.metrics.items() if math.isfinite(v)})
        for baseline, values in trained.baselines.items():
            mlflow.log_metrics({f"{baseline}_{k}": v for k, v in values.items()})
        mlflow.log_metrics({f"data_{k}": v for k, v in trained.stats.items()})
        curve = loss_curve_png(trained.history)
        mlflow.log_image(_png_to_array(curve), "loss_curve.png")
        mlflow.log_artifact(str(directory / "training.json"))
        mlflow.log_artifact(str(directory / "feature_spec.json"))
        run_id = run.info.run_id

    artifacts = ModelArtifacts(version, str(directory), run_id, trained.metrics, trained.baselines, trained.stats)
    popularity = trained.baselines["popularity"]
    metadata = {
        "version": dg.MetadataValue.text(version),
        "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_link(run_id)),
        "metrics": dg.MetadataValue.md(_metrics_table(trained.metrics, trained.baselines)),
        "loss_curve": dg.MetadataValue.md(f"![loss curve](data:image/png;base64,{base64.b64encode(curve).decode()})"),
    }
    metadata.update({k: dg.MetadataValue.float(float(v)) for k, v in trained.metrics.items()})
    metadata.update({f"popularity_{k}": dg.MetadataValue.float(float(v)) for k, v in popularity.items()})
    metadata.update({k: dg.MetadataValue.float(float(v)) for k, v in trained.stats.items()})
    yield dg.Output(artifacts, metadata=metadata)

    model_score = trained.metrics[PRIMARY_METRIC]
    baseline_score = popularity[PRIMARY_METRIC]
    finite = all(math.isfinite(v) for v in trained.metrics.values())
    passed = finite and model_score > baseline_score
    yield dg.AssetCheckResult(
        check_name="model_quality",
        passed=passed,
        description=(
            f"{PRIMARY_METRIC} {model_score:.4f} vs popularity {baseline_score:.4f}"
            + ("" if passed else ": the model does not beat popularity; it will not be exported or activated")
        ),
        metadata={
            PRIMARY_METRIC: dg.MetadataValue.float(model_score),
            f"popularity_{PRIMARY_METRIC}": dg.MetadataValue.float(baseline_score),
            "metrics_finite": dg.MetadataValue.bool(finite),
        },
    )


def _png_to_array(png: bytes) -> np.ndarray:
    import matplotlib.image

    return (matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255).astype(np.uint8)


def parity_samples(trained: TrainedTwoTower, size: int = 256, seed: int = 0) -> tuple[dict, dict]:
    """Realistic tower inputs for the parity check: random catalogue rows and histories."""
    rng = np.random.default_rng(seed)
    record = trained.spec
    n_videos = max(record.videos.size, 3)
    history = {
        "hist_video_idx": rng.integers(0, n_videos, (size, record.history_length)),
        "hist_genre_idx": rng.integers(0, record.genres.size, (size, record.history_length)),
        "hist_maker_idx": rng.integers(0, record.makers.size, (size, record.history_length)),
        "hist_price": rng.normal(size=(size, record.history_length)).astype(np.float32),
        "hist_age_days": rng.uniform(0, 180, (size, record.history_length)).astype(np.float32),
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
    owners=["team:ml-platform"],
    description="Both towers exported with tf2onnx, checked against TensorFlow in ONNX Runtime, "
    "registered in MLflow (alias 'candidate') and recorded as a candidate model version.",
    check_specs=[dg.AssetCheckSpec(
        "onnx_parity", asset="onnx_towers", blocking=True,
        description=f"ONNX Runtime matches TensorFlow within {MAX_PARITY_DIFF} and each file is <= 50 MB.",
    )],
)
def onnx_towers(
    context: dg.AssetExecutionContext,
    two_tower_model: ModelArtifacts,
    mlflow_tracking: MlflowTracking,
    app_db: AppDatabase,
):
    import onnx

    import mlflow

    trained = two_tower_model.load()
    directory = Path(two_tower_model.directory)
    user_sample, item_sample = parity_samples(trained)
    user = export_and_check(trained.user_tower, directory / "user_tower.onnx", user_sample)
    item = export_and_check(trained.item_tower, directory / "item_tower.onnx", item_sample)
    problems = [
        f"{name}: {problem}"
        for name, tower in (("user tower", user), ("item tower", item))
        for problem in _export_problems(tower)
    ]
    passed = not problems
    registered: dict[str, str] = {}
    if passed:
        with mlflow.start_run(run_id=two_tower_model.mlflow_run_id):
            for kind, tower in (("user_tower", user), ("item_tower", item)):
                info = mlflow.onnx.log_model(
                    onnx.load(str(tower.path)), name=kind,
                    registered_model_name=mlflow_tracking.tower_model_names()[kind],
                )
                model_version = str(info.registered_model_version)
                mlflow_tracking.client().set_model_version_tag(
                    mlflow_tracking.tower_model_names()[kind], model_version, "twotower.version",
                    two_tower_model.version,
                )
                registered[kind] = model_version
            mlflow.log_metrics({"onnx_user_tower_max_abs_diff": user.max_abs_diff,
                                "onnx_item_tower_max_abs_diff": item.max_abs_diff})
        mlflow_tracking.set_alias(two_tower_model.version, "candidate")
        with app_db.connect() as conn:
            vector_store.register_version(
                conn,
                two_tower_model.version,
                [vector_store.TowerRecord("user_tower", str(user.path), registered["user_tower"]),
                 vector_store.TowerRecord("item_tower", str(item.path), registered["item_tower"])],
                feature_spec_path=str(directory / "feature_spec.json"),
                mlflow_run_id=two_tower_model.mlflow_run_id,
                metrics={**two_tower_model.metrics, **{
                    f"{baseline}_{name}": value
                    for baseline, values in two_tower_model.baselines.items() for name, value in values.items()
                }},
            )
            vector_store.create_version_partitions(conn, two_tower_model.version)

    yield dg.Output(
        OnnxTowers(
            version=two_tower_model.version,
            user_tower_path=str(user.path),
            item_tower_path=str(item.path),
            feature_spec_path=str(directory / "feature_spec.json"),
            mlflow_run_id=two_tower_model.mlflow_run_id,
            metrics=two_tower_model.metrics,
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


def _export_problems(tower: ExportedTower) -> list[str]:
    problems = []
    if not math.isfinite(tower.max_abs_diff) or tower.max_abs_diff > MAX_PARITY_DIFF:
        problems.append(f"max |ONNX - TF| = {tower.max_abs_diff:.2e} exceeds {MAX_PARITY_DIFF:.0e}")
    if tower.size_bytes > MAX_ONNX_BYTES:
        problems.append(f"{tower.size_bytes / 1e6:.1f} MB exceeds the 50 MB limit of the Edge Functions")
    return problems
