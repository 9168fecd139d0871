"""Retries fit the fault: a dropped connection is retried, out-of-memory, bad data and bugs fail at once."""

import errno

import dagster as dg
import psycopg
import pytest
from mlflow.exceptions import MlflowException

from twotower_pipeline.assets import is_transient, retries_only_transient


class ResourceExhaustedError(Exception):
    """Stands in for tensorflow.errors.ResourceExhaustedError (out of memory), matched by name."""


@pytest.mark.parametrize(("error", "transient"), [
    (psycopg.OperationalError("server closed the connection unexpectedly"), True),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), True),
    (OSError(errno.ECONNRESET, "Connection reset by peer"), True),
    (MlflowException("API request to http://mlflow:5000/api/2.0/mlflow/runs/create failed with exception "
                     "HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded (Connection refused)"), True),
    (MemoryError(), False),
    (ResourceExhaustedError("OOM when allocating tensor with shape [100000, 64]"), False),
    (ValueError("could not convert string to float"), False),
    (KeyError("hist_video_idx"), False),
    (MlflowException("RESOURCE_ALREADY_EXISTS: Registered Model already exists"), False),
    (OSError(errno.ENOSPC, "No space left on device"), False),
])
def test_only_connection_faults_are_transient(error, transient):
    assert is_transient(error) is transient


def test_a_connection_fault_behind_another_error_is_still_transient():
    try:
        try:
            raise psycopg.OperationalError("the database system is shutting down")
        except psycopg.OperationalError as cause:
            raise RuntimeError("writing item vectors failed") from cause
    except RuntimeError as error:
        assert is_transient(error)


def _run(fault: Exception) -> tuple[dg.ExecuteInProcessResult, list[int]]:
    attempts: list[int] = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    @retries_only_transient
    def flaky(context: dg.AssetExecutionContext):
        attempts.append(context.retry_number)
        raise fault

    return dg.materialize([flaky], raise_on_error=False), attempts


def test_a_transient_fault_is_retried_by_the_policy():
    result, attempts = _run(psycopg.OperationalError("connection to server at 127.0.0.1 failed: Connection refused"))
    assert not result.success and attempts == [0, 1, 2]


@pytest.mark.parametrize("fault", [MemoryError(), ValueError("bad row"), ResourceExhaustedError("OOM")])
def test_anything_else_fails_at_once_with_its_reason(fault):
    result, attempts = _run(fault)
    assert not result.success and attempts == [0]
    failure = result.get_step_failure_events()[0].step_failure_data
    assert type(fault).__name__ in failure.user_failure_data.description


def test_a_generator_asset_is_covered_too():
    attempts: list[int] = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    @retries_only_transient
    def streaming(context: dg.AssetExecutionContext):
        attempts.append(context.retry_number)
        raise ValueError("bad input in the middle of the stream")
        yield dg.Output(None)  # noqa: B901 - a generator asset

    result = dg.materialize([streaming], raise_on_error=False)
    assert not result.success and attempts == [0]
