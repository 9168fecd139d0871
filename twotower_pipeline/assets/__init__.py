"""The lineage graph: app data -> training data -> model -> ONNX towers -> vectors -> active version."""

import dagster as dg

# A database or MLflow hiccup (a restart, a dropped connection) is retried with backoff; data and
# configuration problems raise dagster.Failure(allow_retries=False) and stop at once.
TRANSIENT_RETRIES = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL,
                                   jitter=dg.Jitter.PLUS_MINUS)
OWNERS = ["team:ml-platform"]
TRAINING_POOL = "training"  # one slot (dagster.yaml): two trainings never run at once
