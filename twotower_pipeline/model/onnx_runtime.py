"""Running an exported tower in ONNX Runtime: what publishing and the gate need, without TensorFlow.

Ids go in as int64 (what MLflow's ONNX flavour and onnxruntime-web both expect), floats as
float32; the single output is ``embedding`` [batch, 64].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

OUTPUT_NAME = "embedding"


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
