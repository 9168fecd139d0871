"""What the model assets hand to each other (the IO manager stores these, not the files they name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twotower_pipeline.resources import ModelStore

if TYPE_CHECKING:  # TensorFlow loads in the steps that need it, never with the code location
    from twotower_pipeline.model.training import TrainedTwoTower


@dataclass
class ModelArtifacts:
    """A trained version: where its files are, how it was trained and how it scored on its holdout."""

    version: str
    directory: str
    mlflow_run_id: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    stats: dict[str, float] = field(default_factory=dict)
    feature_importance: dict[str, float] = field(default_factory=dict)
    training_config: dict = field(default_factory=dict)  # TrainingConfig, as a dict: the gate re-prepares its holdout

    def load(self, model_store: ModelStore) -> TrainedTwoTower:
        from twotower_pipeline.model.training import TrainedTwoTower

        return TrainedTwoTower.load(model_store.local(self.directory))


@dataclass
class OnnxTowers:
    """A version's exported towers and feature spec, checked against TensorFlow."""

    version: str
    user_tower_path: str
    item_tower_path: str
    feature_spec_path: str
    mlflow_run_id: str
    metrics: dict[str, float]
    training_config: dict = field(default_factory=dict)
