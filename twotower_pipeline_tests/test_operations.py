"""Operations: failure alerts to a webhook, retries, the training pool, freshness, instance limits."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest
import yaml

from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.resources import AlertWebhook
from twotower_pipeline.retrain import LOCAL_INSTANCE_CONFIG
from twotower_pipeline.sensors import run_failure_alert
from twotower_pipeline.settings import PROJECT_ROOT, Settings


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


def test_the_active_model_is_expected_to_be_at_most_8_days_old():
    node = build_definitions(Settings.from_env()).resolve_asset_graph().get(dg.AssetKey("active_model_version"))
    assert node.freshness_policy is not None
    assert node.freshness_policy.fail_window.to_timedelta().days == 8
