"""Operations: failure alerts to a webhook, retries, the training pool, freshness, instance limits."""

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest
import yaml

from twotower_pipeline import db, status
from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.resources import AlertWebhook
from twotower_pipeline.retrain import LOCAL_INSTANCE_CONFIG
from twotower_pipeline.sensors import run_failure_alert
from twotower_pipeline.settings import PROJECT_ROOT, Settings
from twotower_pipeline.status import PipelineStatus, pipeline_status


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append({"path": self.path, "type": self.headers["Content-Type"],
                                   "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/alerts", _Receiver.received
    server.shutdown()


@dg.op
def load_likes():
    raise ConnectionError("could not connect to the app database at db.example:5432")


@dg.job
def failing_job():
    load_likes()


def _failure_context(instance: dg.DagsterInstance, webhook: AlertWebhook):
    result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.PIPELINE_FAILURE)
    return dg.build_run_status_sensor_context(sensor_name="run_failure_alert", dagster_event=failure,
                                              dagster_instance=instance, dagster_run=run,
                                              resources={"alert_webhook": webhook}).for_run_failure()


def test_a_failed_run_is_reported_to_the_webhook(receiver):
    url, received = receiver
    with dg.instance_for_test() as instance:
        context = _failure_context(instance, AlertWebhook(url=url))
        run_failure_alert(context)
    assert len(received) == 1
    message = received[0]
    assert message["path"] == "/hooks/alerts" and message["type"] == "application/json"
    body = message["body"]
    assert body["job"] == "failing_job" and body["run_id"] == context.dagster_run.run_id
    assert any("load_likes" in step and "could not connect" in step for step in body["failed_steps"])


def test_without_a_webhook_nothing_is_sent(receiver):
    _, received = receiver
    with dg.instance_for_test() as instance:
        outcome = run_failure_alert(_failure_context(instance, AlertWebhook(url=None)))
    assert isinstance(outcome, dg.SkipReason)
    assert received == []


def test_the_webhook_url_comes_from_the_environment(monkeypatch, receiver):
    url, _ = receiver
    monkeypatch.setenv("TWOTOWER_ALERT_WEBHOOK_URL", url)
    webhook = build_definitions(Settings.from_env()).resources["alert_webhook"]
    assert isinstance(webhook.url, dg.EnvVar) and webhook.url.env_var_name == "TWOTOWER_ALERT_WEBHOOK_URL"


def test_transient_failures_are_retried_and_training_has_a_pool_of_one():
    defs = build_definitions(Settings.from_env())
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        policy = defs.resolve_assets_def(key).op.retry_policy
        assert policy is not None and policy.max_retries >= 3, key
    assert defs.resolve_assets_def("two_tower_model").op.pool == "training"
    for text in (LOCAL_INSTANCE_CONFIG, (PROJECT_ROOT / "deploy" / "dagster.yaml").read_text()):
        config = yaml.safe_load(text)["concurrency"]
        assert config["pools"]["default_limit"] == 1
        assert {"key": "dagster/backfill", "limit": 2} in config["runs"]["tag_concurrency_limits"]


def test_the_local_instance_accepts_the_concurrency_settings(tmp_path):
    (tmp_path / "dagster.yaml").write_text(LOCAL_INSTANCE_CONFIG)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"
    finally:
        instance.dispose()


# -- freshness of the active model (twotower status) ---------------------------------------------------

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # a Monday, after the 03:00 retrain
WEEK_AND_A_DAY = timedelta(days=8)


@pytest.fixture
def clock(monkeypatch):
    """status.py's clock stopped at NOW."""

    class Stopped(datetime):
        @classmethod
        def now(cls, tz=None):
            return NOW.astimezone(tz) if tz else NOW.replace(tzinfo=None)

    monkeypatch.setattr(status, "datetime", Stopped)
    return NOW


def _status(activated_at: datetime | None) -> PipelineStatus:
    version = "tt-20260302" if activated_at else None
    return PipelineStatus(active_version=version, activated_at=activated_at, metrics={"recall_at_50": 0.31},
                          latest_candidate=None, last_retrain=None)


def _freshness_line(report: PipelineStatus) -> str:
    return report.lines()[0]


def test_a_model_activated_by_last_weeks_retrain_is_fresh(clock):
    report = _status(NOW - timedelta(days=7, hours=9))
    assert report.age_days == pytest.approx(7.375)
    assert report.fresh
    assert _freshness_line(report).endswith("(7.4 days ago, fresh)")


def test_a_model_that_missed_a_retrain_is_stale(clock):
    report = _status(NOW - timedelta(days=14))
    assert report.age_days == pytest.approx(14.0) and not report.fresh
    assert "(14.0 days ago, STALE (older than 8 days))" in _freshness_line(report)


def test_freshness_ends_at_exactly_a_week_and_a_day(clock):
    assert _status(NOW - WEEK_AND_A_DAY).fresh  # the limit itself is still fresh
    late = _status(NOW - WEEK_AND_A_DAY - timedelta(seconds=1))
    assert not late.fresh and "STALE" in _freshness_line(late)


def test_without_an_active_model_nothing_is_fresh(clock):
    report = _status(None)
    assert report.age_days is None and not report.fresh
    assert _freshness_line(report) == "active model: none (run `twotower retrain`)"


def test_a_database_that_never_ran_the_pipeline_reports_no_model_and_no_retrain(database_url, clock):
    with dg.instance_for_test() as instance, db.connect(database_url) as conn:
        report = pipeline_status(conn, instance)
    assert report.active_version is None and not report.fresh
    assert report.lines() == ["active model: none (run `twotower retrain`)",
                              "last weekly retrain: none recorded in this Dagster instance"]


def test_twotower_status_and_dagsters_freshness_policy_agree_on_when_the_model_is_stale(clock):
    """The CLI's STALE and the active_model_version asset's freshness policy fail at the same age."""
    node = build_definitions(Settings.from_env()).resolve_asset_graph().get(dg.AssetKey("active_model_version"))
    fail_window = node.freshness_policy.fail_window.to_timedelta()
    assert _status(NOW - fail_window).fresh
    assert not _status(NOW - fail_window - timedelta(seconds=1)).fresh
