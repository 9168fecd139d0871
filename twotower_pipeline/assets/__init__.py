"""The lineage graph: app data -> training data -> model -> ONNX towers -> vectors -> active version."""

import errno
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg

# What is transient is retried 3 times with backoff (TRANSIENT_RETRIES); everything else fails at
# once with its reason (retries_only_transient): one bad week must not mean three full trainings.
TRANSIENT_RETRIES = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL,
                                   jitter=dg.Jitter.PLUS_MINUS)
OWNERS = ["team:ml-platform"]
TRAINING_POOL = "training"  # one slot (dagster.yaml): two trainings never run at once

_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                     errno.ENETUNREACH, errno.EPIPE, errno.EAGAIN}
_TRANSIENT_WORDS = ("connection refused", "connection reset", "could not connect", "server closed the connection",
                    "terminating connection", "timed out", "temporarily unavailable", "max retries exceeded",
                    "the database system is starting up", "the database system is shutting down",
                    "connection to server", "endpoint connection", "service unavailable", "too many connections")


def is_transient(error: BaseException) -> bool:
    """A dropped or refused connection to the database, MLflow or the object store: worth a retry.
    Out of memory, bad data and bugs are not; neither is anything else."""
    import psycopg
    import sqlalchemy.exc

    seen = error
    while seen is not None:
        if isinstance(seen, MemoryError) or type(seen).__name__ == "ResourceExhaustedError":
            return False
        if isinstance(seen, (psycopg.OperationalError, sqlalchemy.exc.OperationalError,
                             sqlalchemy.exc.InterfaceError, ConnectionError, TimeoutError)):
            return True
        if isinstance(seen, OSError) and seen.errno in _TRANSIENT_ERRNOS:
            return True
        # MLflow, requests and botocore wrap connection failures in their own types: their message says so.
        if type(seen).__module__.split(".")[0] in ("mlflow", "requests", "urllib3", "botocore", "s3fs", "aiohttp") \
                and any(word in str(seen).lower() for word in _TRANSIENT_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def _only_transient_errors_retry():
    """Dagster's own signals and transient errors pass through; any other error becomes a Failure
    that stops the run at once, with its reason."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise
    except Exception as error:
        if is_transient(error):
            raise
        raise dg.Failure(f"{type(error).__name__}: {error}", allow_retries=False) from error


def retries_only_transient(fn: Callable) -> Callable:
    """Let a transient error reach the asset's retry policy; turn any other into a Failure that
    stops the run at once, with its reason."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            with _only_transient_errors_retry():
                yield from fn(*args, **kwargs)

        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        with _only_transient_errors_retry():
            return fn(*args, **kwargs)

    return function


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
