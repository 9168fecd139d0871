"""ONNX export of each tower with tf2onnx, checked against TensorFlow in ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twotower_pipeline.model.onnx_runtime import OUTPUT_NAME, onnx_session, run_onnx
from twotower_pipeline.model.tensorflow_import import keras, tf

OPSET = 17


@dataclass(frozen=True)
class ExportedTower:
    path: Path
    size_bytes: int
    max_abs_diff: float
    checked_rows: int


def _signature(tower: keras.Model) -> list[tf.TensorSpec]:
    specs = []
    for name, tensor in tower.input.items():
        dtype = tf.int64 if "int" in str(tensor.dtype) else tf.float32
        specs.append(tf.TensorSpec((None, *tensor.shape[1:]), dtype, name=name))
    return specs


def export_tower(tower: keras.Model, path: Path) -> Path:
    signature = _signature(tower)
    names = [spec.name for spec in signature]

    @tf.function(input_signature=signature)
    def serve(*args):
        return {OUTPUT_NAME: tower(dict(zip(names, args)), training=False)}

    path.parent.mkdir(parents=True, exist_ok=True)
    import tf2onnx  # after TensorFlow, which tensorflow_import loads quietly

    tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET, output_path=str(path))
    return path


def export_and_check(tower: keras.Model, path: Path, sample: dict[str, np.ndarray]) -> ExportedTower:
    """Export, then compare ONNX Runtime with TensorFlow on ``sample`` (inputs by name)."""
    export_tower(tower, path)
    expected = np.asarray(tower({k: tf.constant(v) for k, v in sample.items()}, training=False))
    actual = run_onnx(onnx_session(path), sample)
    rows = len(next(iter(sample.values())))
    return ExportedTower(
        path=path,
        size_bytes=path.stat().st_size,
        max_abs_diff=float(np.max(np.abs(expected - actual))) if rows else 0.0,
        checked_rows=rows,
    )
