"""ONNX export of each tower with tf2onnx, checked against TensorFlow in ONNX Runtime.

Ids go in as int64 (what MLflow's ONNX flavour and onnxruntime-web both expect), floats as
float32; the single output is ``embedding`` [batch, 64].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

OPSET = 17
OUTPUT_NAME = "embedding"


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
    tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET, output_path=str(path))
    return path


def onnx_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> np.ndarray:
    feeds = {}
    for model_input in session.get_inputs():
        value = inputs[model_input.name]
        feeds[model_input.name] = value.astype(np.int64 if model_input.type == "tensor(int64)" else np.float32)
    return session.run([OUTPUT_NAME], feeds)[0]


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
