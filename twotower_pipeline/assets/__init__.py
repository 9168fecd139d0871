"""The lineage graph: app data -> training data -> model -> ONNX towers -> vectors -> active version."""

import dagster as dg

# A database or MLflow hiccup (a restart, a dropped connection) is retried with backoff; data and
# configuration problems raise dagster.Failure(allow_retries=False) and stop at once.
TRANSIENT_RETRIES = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL,
                                   jitter=dg.Jitter.PLUS_MINUS)
OWNERS = ["team:ml-platform"]
TRAINING_POOL = "training"  # one slot (dagster.yaml): two trainings never run at once


class disk_full_is_final:  # noqa: N801 - used as a context manager, reads as a sentence
    """A full disk is not transient: stop with a clear reason instead of retrying the step."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        import errno

        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise dg.Failure(
                f"{error.strerror or error} while writing {self.where}: free space there and rerun",
                allow_retries=False,
            ) from error
        return False
