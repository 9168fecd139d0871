"""The lineage graph: app data -> training data -> model -> ONNX towers -> vectors -> active version."""

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

# A database or MLflow hiccup (a restart, a dropped connection) is retried with backoff; data and
# configuration problems raise dagster.Failure(allow_retries=False) and stop at once.
TRANSIENT_RETRIES = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL,
                                   jitter=dg.Jitter.PLUS_MINUS)
OWNERS = ["team:ml-platform"]
TRAINING_POOL = "training"  # one slot (dagster.yaml): two trainings never run at once


@contextmanager
def disk_full_is_final(where: str) -> Iterator[None]:
    """A full disk is not transient: stop with a clear reason instead of retrying the step."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise dg.Failure(f"{error.strerror or error} while writing {where}: free space there and rerun",
                         allow_retries=False) from error
