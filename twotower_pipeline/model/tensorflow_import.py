"""TensorFlow and Keras, imported once and quietly.

TensorFlow's C++ start-up writes "All log messages before absl::InitializeLog()" and a oneDNN
notice straight to file descriptor 2, twice, before any log level applies (TF_CPP_MIN_LOG_LEVEL
does not reach them). Every module that needs TensorFlow imports it from here, so those lines never
reach a command's or a code server's output; Python errors still propagate as usual.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _native_stderr_silenced():
    import keras
    import tensorflow as tf

__all__ = ["keras", "tf"]
