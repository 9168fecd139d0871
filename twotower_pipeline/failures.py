"""Why a step failed, in one readable line: for the command line's summary and the failure alert."""

from __future__ import annotations

import dagster as dg


def step_failure_reason(event: dg.DagsterEvent) -> str:
    """The readable reason a step failed: a Failure's description, else the innermost error."""
    data = event.step_failure_data
    if data is None or data.error is None:
        return "unknown error"
    # A dagster.Failure carries the readable reason in its description.
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    while error.cause is not None:  # the innermost cause is the user's error, not Dagster's wrapper
        error = error.cause
    return error.message.strip()
