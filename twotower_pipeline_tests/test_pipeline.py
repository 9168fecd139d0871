"""The whole asset graph on real components (PostgreSQL + pgvector, TensorFlow, ONNX Runtime,
MLflow store, Dagster instance), materialised in-process on small demo data."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest

from twotower_pipeline import db, vector_store
from twotower_pipeline.model.evaluation import top_k_rows
from twotower_pipeline.model.serving_path import (
    SERVED_BY_POPULARITY,
    SERVED_BY_SEGMENT,
    item_inputs,
    served_ranking,
)
from twotower_pipeline.publishing import (
    UnsoundVectors,
    load_version,
    publish_item_vectors,
    publish_user_vectors,
    read_snapshot,
)
from twotower_pipeline.resources import MlflowTracking
from twotower_pipeline.retrain import run_weekly_retrain
from twotower_pipeline.settings import PROJECT_ROOT
from twotower_pipeline_tests.conftest import PUBLISHABLE, PipelineState, new_database, published_pipeline

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

LINEAGE = ["videos", "raw_likes", "user_profiles", "training_data", "two_tower_model", "onnx_towers",
           "item_embeddings", "user_embeddings", "active_model_version"]
SMALL = PUBLISHABLE
QUICK_TRAINING = {"ops": {"two_tower_model": {"config": {"epochs": 8, "batch_size": 256}}}}


@pytest.fixture(scope="module")
def published(tmp_path_factory, postgres_server) -> PipelineState:
    """One retrain on fresh demo data, shared by the tests of this module."""
    with published_pipeline(tmp_path_factory.mktemp("home"), new_database(postgres_server, "p"), SMALL,
                            QUICK_TRAINING) as state:
        yield state


def test_the_weekly_retrain_materialises_every_asset_and_passes_every_check(published):
    outcome = published.first
    assert outcome.success, outcome.reasons
    instance = dg.DagsterInstance.get()
    for key in LINEAGE:
        assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key
    records = instance.fetch_materializations(dg.AssetKey("item_embeddings"), limit=100).records
    assert {r.partition_key for r in records} == set("0123456789abcdef")
    assert set(outcome.step_seconds) >= set(LINEAGE)


def test_the_new_version_is_active_with_a_vector_for_every_video_and_user(published):
    with db.connect(published.url) as conn:
        version, metrics, status = conn.execute(
            "select version, metrics, status from public.embedding_model_versions "
            "where is_active and model_type = 'user_tower'").fetchone()
        counts = conn.execute(
            "select (select count(*) from public.videos), "
            "(select count(*) from public.two_tower_item_embeddings where model_version = %s), "
            "(select count(distinct user_id) from public.likes), "
            "(select count(*) from public.two_tower_user_embeddings where model_version = %s)",
            (version, version)).fetchone()
        user = conn.execute("select user_id from public.likes limit 1").fetchone()[0]
        rows = conn.execute("select video_id, model_version from public.recommend_videos(%s, 10)", (user,)).fetchall()
    assert status == "active"
    assert counts[0] == counts[1] == SMALL.videos
    assert counts[2] == counts[3] == SMALL.users
    assert metrics["recall_at_50"] > 0
    assert len(rows) == 10 and {r[1] for r in rows} == {version}


def test_the_model_beats_popularity_and_mlflow_holds_the_run_and_both_towers(published):
    with db.connect(published.url) as conn:
        version, run_id = conn.execute(
            "select version, mlflow_run_id from public.embedding_model_versions where is_active limit 1").fetchone()
    client = mlflow.MlflowClient(published.settings.mlflow_tracking_uri)
    run = client.get_run(run_id)
    assert run.data.metrics["recall_at_50"] > run.data.metrics["popularity_recall_at_50"]
    assert run.data.params["logq_correction"] == "True"
    losses = client.get_metric_history(run_id, "epoch_loss")
    assert len(losses) >= 2 and losses[-1].value < losses[0].value
    for name in ("twotower_user_tower", "twotower_item_tower"):
        champion = client.get_model_version_by_alias(name, "champion")
        candidate = client.get_model_version_by_alias(name, "candidate")
        assert champion.tags["twotower.version"] == version
        assert champion.run_id == run_id
        assert candidate.version == champion.version  # the newest trained one is the active one


def test_what_the_evaluation_ranks_is_what_recommend_videos_serves(published):
    """The run's evaluation ranks with the served path; on the database, at the moment of publishing,
    that is exactly recommend_videos' answer: same vectors, exclusions and cold-start lists."""
    url = published.url
    with db.connect(url) as conn:
        record = vector_store.active_record(conn)
        age_range, region = conn.execute(
            "select age_range, region from public.profiles where age_range is not null and region is not null "
            "group by 1, 2 order by count(*) desc limit 1").fetchone()
        newcomers = [str(uuid.uuid4()) for _ in range(2)]
        conn.execute("insert into public.profiles (id, age_range, region) values (%s, %s, %s), (%s, null, null)",
                     (newcomers[0], age_range, region, newcomers[1]))
        likers = [r[0] for r in conn.execute(
            "select user_id::text from public.likes group by 1 order by md5(user_id::text) limit 40")]
    model = load_version(record)
    as_of = datetime.now(UTC)
    publish_item_vectors(url, model, list(vector_store.SHARDS), as_of)
    publish_user_vectors(url, model, as_of)  # the active version's vectors, rewritten in place
    users = np.array(likers + newcomers, dtype=object)
    ranking = served_ranking(read_snapshot(url, as_of), model.spec, model.embed_users, model.embed_items, users)
    assert ranking.served_by[-2:].tolist() == [SERVED_BY_SEGMENT, SERVED_BY_POPULARITY]
    top = top_k_rows(ranking.scores(slice(0, len(users))), ranking.seen, 10)
    with db.connect(url) as conn:
        catalogue_ids = np.array([r[0] for r in conn.execute("select id::text from public.videos order by id")])
        for user, rows in zip(users, top):
            served = [r[0] for r in conn.execute("select video_id::text from public.recommend_videos(%s, 10)",
                                                 (user,))]
            assert served == catalogue_ids[rows].tolist(), user


def _stored_item_vectors(url: str, version: str) -> dict[str, np.ndarray]:
    with db.connect(url) as conn:
        partition = vector_store.partition_name(conn, vector_store.ITEM_TABLE, version)
        return {video: vector.to_numpy() for video, vector in conn.execute(
            f'select video_id::text, embedding from public."{partition}"')}


def test_a_re_embed_streamed_in_chunks_through_worker_processes_writes_the_evaluated_vectors(published):
    """Chunks read, prepared in two worker processes, embedded and copied while the next ones are
    read: every video's vector is the one computed from the whole catalogue at once (the run's
    evaluation's inputs), and the per-shard figures add up."""
    url = published.url
    with db.connect(url) as conn:
        model = load_version(vector_store.active_record(conn))
    as_of = datetime.now(UTC)
    report = publish_item_vectors(url, model, list(vector_store.SHARDS), as_of, workers=2, chunk_rows=257)
    snapshot = read_snapshot(url, as_of)
    assert len(snapshot.catalogue) > 4 * 257  # several chunks, so the worker processes ran
    expected = model.embed_items(item_inputs(model.spec, snapshot.catalogue, snapshot.likes, as_of))
    stored = _stored_item_vectors(url, model.version)
    assert report.written == len(stored) == len(snapshot.catalogue)
    np.testing.assert_allclose(np.stack([stored[v] for v in snapshot.catalogue["id"]]), expected, atol=1e-6)
    assert sum(part.written for part in report.shards.values()) == report.written
    assert report.phase_seconds["features"] > 0 and report.phase_seconds["write"] > 0


def test_a_re_embed_that_fails_midway_leaves_the_stored_vectors_as_they_were(published):
    """Non-finite vectors from the third chunk: the re-embed stops naming the version, and the rows the
    first chunks had already copied are rolled back with the rest."""
    url = published.url
    with db.connect(url) as conn:
        record = vector_store.active_record(conn)
    before = _stored_item_vectors(url, record.version)

    class FailsOnThirdChunk(type(load_version(record))):
        chunks = 0

        def embed_items(self, inputs):
            vectors = super().embed_items(inputs)
            FailsOnThirdChunk.chunks += 1
            if FailsOnThirdChunk.chunks == 3:
                vectors[0, 0] = np.nan
            return vectors

    model = FailsOnThirdChunk.load(record.version, record.user_tower_path, record.item_tower_path,
                                   record.feature_spec_path)
    with pytest.raises(UnsoundVectors, match=f"model version {record.version} produced 1 non-finite item"):
        publish_item_vectors(url, model, list(vector_store.SHARDS), datetime.now(UTC), workers=1, chunk_rows=200)
    after = _stored_item_vectors(url, record.version)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[v], before[v]) for v in before)


def test_a_blocking_data_check_stops_the_line_and_leaves_the_active_model_alone(published, tmp_path: Path):
    with db.connect(published.url) as conn:
        before = conn.execute("select version from public.embedding_model_versions where is_active limit 1").fetchone()
        vectors_before = conn.execute("select count(*) from public.two_tower_item_embeddings").fetchone()[0]
        # A broken sync: half of the likes now point at videos the catalogue does not have.
        conn.execute("insert into public.likes (user_id, video_id, created_at) "
                     "select user_id, gen_random_uuid(), created_at from public.likes")
    try:
        outcome = run_weekly_retrain(published.settings, QUICK_TRAINING)
        with db.connect(published.url) as conn:
            after = conn.execute("select version from public.embedding_model_versions where is_active limit 1").fetchone()
            vectors_after = conn.execute("select count(*) from public.two_tower_item_embeddings").fetchone()[0]
    finally:
        with db.connect(published.url) as conn:
            conn.execute("delete from public.likes where video_id not in (select id from public.videos)")
    assert not outcome.success
    assert any("data_quality" in r and "video_id is a video of the catalogue" in r for r in outcome.reasons)
    assert "two_tower_model" not in outcome.step_seconds
    assert after == before and vectors_after == vectors_before


def _active(url: str) -> str | None:
    with db.connect(url) as conn:
        row = conn.execute("select version from public.embedding_model_versions "
                           "where is_active and model_type = 'item_tower'").fetchone()
    return row[0] if row else None


def test_feature_importance_is_stored_per_tower_for_the_active_version(published):
    with db.connect(published.url) as conn:
        rows = conn.execute(
            "select m.model_type, f.feature_name, f.importance_score from public.feature_importance f "
            "join public.embedding_model_versions m on m.id = f.model_version_id where m.is_active").fetchall()
    by_tower = {tower: {name for t, name, _ in rows if t == tower} for tower in ("user_tower", "item_tower")}
    assert "user: liked videos" in by_tower["user_tower"] and "item: genre" in by_tower["item_tower"]
    assert all(name.startswith("user:") for name in by_tower["user_tower"])
    assert all(name.startswith("item:") for name in by_tower["item_tower"])


def test_the_gate_rejects_a_worse_candidate_and_rollback_restores_a_kept_version(published):
    from click.testing import CliRunner

    from twotower_pipeline.cli import main

    champion = _active(published.url)
    client = mlflow.MlflowClient(published.settings.mlflow_tracking_uri)

    # A candidate that cannot clear the bar is rejected: visible, recorded, and nothing switches.
    # (a margin of -100%: it would have to beat the champion by the champion's whole score)
    strict = {"ops": {**QUICK_TRAINING["ops"], "active_model_version": {"config": {"relative_margin": -1.0}}}}
    instance = dg.DagsterInstance.get()
    activation_before = instance.get_latest_materialization_event(dg.AssetKey("active_model_version"))
    rejected = run_weekly_retrain(published.settings, strict)
    assert rejected.success, rejected.reasons
    assert any("promotion_gate" in r and "the champion stays" in r for r in rejected.reasons)
    assert _active(published.url) == champion
    with db.connect(published.url) as conn:
        candidate, status, reason, run_id = conn.execute(
            "select version, status, status_reason, mlflow_run_id from public.embedding_model_versions "
            "where model_type = 'item_tower' order by created_at desc limit 1").fetchone()
    assert candidate != champion and status == "rejected" and champion in reason
    assert "interval [" in reason and "held-out likes" in reason
    assert client.get_run(run_id).data.tags["twotower.promotion"] == "rejected"
    assert {"gate_difference", "gate_interval_low", "gate_interval_high"} <= set(client.get_run(run_id).data.metrics)
    assert client.get_model_version_by_alias("twotower_item_tower", "candidate").tags["twotower.version"] == candidate
    assert client.get_model_version_by_alias("twotower_item_tower", "champion").tags["twotower.version"] == champion
    # No new materialisation of the active version: its freshness still dates from the last activation.
    activation_after = instance.get_latest_materialization_event(dg.AssetKey("active_model_version"))
    assert activation_after.run_id == activation_before.run_id
    status = CliRunner().invoke(main, ["status"])
    assert status.exit_code == 0, status.output
    assert f"active model: {champion}" in status.output and "fresh" in status.output
    assert f"latest candidate: {candidate} (rejected" in status.output
    assert "last weekly retrain: success" in status.output

    # Trained again on the same data, the candidate is "not different" from the champion: a fresh model goes live.
    again = run_weekly_retrain(published.settings, QUICK_TRAINING)
    assert again.success, again.reasons
    newest = _active(published.url)
    assert newest not in (champion, candidate)
    with db.connect(published.url) as conn:
        gate = conn.execute("select metrics -> 'gate' from public.embedding_model_versions where version = %s "
                            "and model_type = 'item_tower'", (newest,)).fetchone()[0]
    assert gate["promote"] and gate["verdict"] == "not different", gate
    assert gate["low"] <= 0 <= gate["high"] and gate["held_out_likes"] >= 500

    # Rollback re-activates the previous version and its kept vectors, in one command.
    result = CliRunner().invoke(main, ["rollback"])
    assert result.exit_code == 0, result.output
    assert _active(published.url) == champion
    with db.connect(published.url) as conn:
        user = conn.execute("select user_id from public.likes limit 1").fetchone()[0]
        served = {r[0] for r in conn.execute("select model_version from public.recommend_videos(%s, 5)", (user,))}
    assert served == {champion}
    assert client.get_model_version_by_alias("twotower_item_tower", "champion").tags["twotower.version"] == champion

    result = CliRunner().invoke(main, ["rollback", "--to", "tt-20000101-000000"])
    assert result.exit_code == 1 and "unknown" in result.output
    result = CliRunner().invoke(main, ["rollback", "--to", newest])
    assert result.exit_code == 0 and _active(published.url) == newest


def test_a_deliberately_degraded_candidate_is_refused_against_the_real_champion(published):
    """The real champion, served with its own ONNX towers on its holdout, against a copy of itself whose
    item vectors are scrambled: measurably worse, refused."""
    from twotower_pipeline.model.config import TrainingConfig
    from twotower_pipeline.model.preparation import prepare_training
    from twotower_pipeline.promotion import WORSE, GateRule, gate
    from twotower_pipeline.publishing import read_snapshot

    with db.connect(published.url) as conn:
        record = vector_store.active_record(conn)
    champion = load_version(record)
    snapshot = read_snapshot(published.url, datetime.now(UTC))

    class Scrambled:
        version, spec = "tt-degraded", champion.spec
        embed_users = staticmethod(champion.embed_users)

        @staticmethod
        def embed_items(inputs):
            vectors = champion.embed_items(inputs)
            return vectors[np.random.default_rng(0).permutation(len(vectors))]

    def holdout():
        return prepare_training(snapshot.catalogue, snapshot.likes, TrainingConfig(), snapshot.profiles,
                                snapshot.as_of)

    decision = gate(Scrambled(), record, record.version, holdout, load_version, GateRule())
    assert not decision.promote and decision.comparison.verdict == WORSE, decision.reason
    assert decision.comparison.high < 0 and not decision.champion_unavailable
    same = gate(champion, record, record.version, holdout, load_version, GateRule())
    assert same.promote and same.comparison.verdict == "not different" and same.comparison.difference == 0


# -- the UIs, as the ops team sees them (headless Chromium) ----------------------------------------
SCREENSHOTS = PROJECT_ROOT / "test-output" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _serve(command: list[str], url: str, seconds: float = 180) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{command[0]} exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process
        except OSError:
            time.sleep(1)
    os.killpg(process.pid, signal.SIGTERM)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _page(driver, url: str, expected: list[str], screenshot: str, seconds: float = 60, ready=lambda text: True) -> str:
    """Open url, dismiss Dagster's newsletter prompt like a person would, wait for every expected text
    (and for ``ready(text)``), save a screenshot."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
            if button.is_displayed():
                button.click()
        text = driver.find_element(By.TAG_NAME, "body").text
        if all(item in text for item in expected) and ready(text) and "Loading..." not in text:
            break
        time.sleep(1)
    driver.save_screenshot(str(SCREENSHOTS / f"{screenshot}.png"))
    missing = [item for item in expected if item not in text]
    assert not missing and ready(text), f"{url} does not show {missing or 'what was expected'}; see {screenshot}.png"
    return text


def test_the_dagster_ui_shows_the_lineage_materialisations_schedule_and_partitions(published, browser):
    port = _free_port()
    webserver = _serve([str(Path(sys.executable).with_name("dagster-webserver")), "-w",
                        str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                       f"http://127.0.0.1:{port}/server_info")
    base = f"http://127.0.0.1:{port}"
    try:
        # Every asset of the lineage with its latest materialisation (all but the partitioned one).
        _page(browser, f"{base}/assets", LINEAGE, "dagster-assets",
              ready=lambda text: text.count("Materialized") >= len(LINEAGE) - 1)
        groups = {"app_data": ["videos", "raw_likes", "user_profiles", "training_data"],
                  "model": ["two_tower_model", "onnx_towers"],
                  "serving": ["item_embeddings", "user_embeddings", "active_model_version"]}
        for group, assets in groups.items():
            page = _page(browser, f"{base}/locations/twotower_pipeline/asset-groups/{group}",
                         assets + ["Materialized"], f"dagster-lineage-{group}")
            if group == "serving":
                assert "16 partitions" in page and "100% filled" in page
        _page(browser, f"{base}/automation",
              ["weekly_retrain_schedule", "Monday", "new_videos_sensor", "run_failure_alert"], "dagster-automation")
        _page(browser, f"{base}/assets/item_embeddings?view=partitions",
              ["Materialized (16)", "Missing (0)"] + list("0123456789abcdef"), "dagster-item-embedding-partitions")
        _page(browser, f"{base}/assets/two_tower_model?view=events",
              ["recall_at_50", "popularity_recall_at_50", "mlflow_run"], "dagster-model-metadata")
    finally:
        os.killpg(webserver.pid, signal.SIGTERM)
        webserver.wait(timeout=60)


def test_the_mlflow_ui_shows_the_run_metrics_and_the_champion(published, browser):
    port = _free_port()
    server = _serve([str(Path(sys.executable).with_name("twotower")), "mlflow-ui", "--port", str(port)],
                    f"http://127.0.0.1:{port}/health")
    base = f"http://127.0.0.1:{port}"
    try:
        with db.connect(published.url) as conn:
            version, run_id = conn.execute("select version, mlflow_run_id from public.embedding_model_versions "
                                           "where is_active limit 1").fetchone()
        client = mlflow.MlflowClient(published.settings.mlflow_tracking_uri)
        experiment = client.get_run(run_id).info.experiment_id
        # The experiment is of the model-training kind, and the links the pipeline gives (the Dagster
        # metadata's mlflow_run) open the model-training view, with the runs listed (not an empty GenAI page).
        assert client.get_experiment(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
        tracking = MlflowTracking(tracking_uri=published.settings.mlflow_tracking_uri, ui_url=base)
        _page(browser, f"{base}/#/experiments/{experiment}?workflowType=machine_learning", [version],
              "mlflow-experiment")
        _page(browser, tracking.run_link(run_id),
              [version, "recall_at_50", "ndcg_at_10", "item_knn_recall_at_50", "epoch_loss"], "mlflow-run")
        _page(browser, f"{base}/#/models/twotower_item_tower", ["twotower_item_tower", "champion", version],
              "mlflow-model-item-tower")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


# README command blocks: each line is either run here, on the published state, as pasted, or covered by
# the test named beside it (long-running, destructive, or needing Docker).
COVERED_ELSEWHERE = {
    "make demo": "test_cli.py::test_demo_runs_end_to_end_on_the_embedded_default (twotower demo)",
    "make test": ".ci/run",
    "make ui": "test_cli.py::test_ui_commands_serve_on_loopback_and_stop_on_sigterm",
    ".venv/bin/twotower rollback": "test_pipeline.py::test_the_gate_rejects_a_worse_candidate_and_rollback_restores_a_kept_version",
    "cp .env.example .env": "test_deployment.py (the compose file, statically: no Docker engine here)",
    "docker compose up -d": "test_deployment.py (the compose file, statically: no Docker engine here)",
}


def _readme_command_lines() -> list[str]:
    import re

    text = (PROJECT_ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines


def test_the_readmes_commands_run_as_pasted(published, tmp_path):
    lines = _readme_command_lines()
    assert any(line.startswith("psql") for line in lines)
    runnable = [line for line in lines if not any(line.startswith(known) for known in COVERED_ELSEWHERE)]
    assert len(runnable) >= 5, runnable
    # A project folder as a user has it: the virtual environment and the state folder under it.
    project = tmp_path / "project"
    project.mkdir()
    (project / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (project / ".twotower").symlink_to(published.settings.home)
    env = {**os.environ, **published.env}
    env.pop("DAGSTER_HOME")  # the README's own export sets it
    script = "set -e\n" + "\n".join(runnable) + "\n"
    result = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert "ACTIVE" in result.stdout  # twotower versions
    assert "RUN_SUCCESS" in result.stdout + result.stderr or "materialized" in (result.stdout + result.stderr).lower()


# Last: it leaves a failed run as the newest, which the UI tests above would show.
def test_a_champion_that_cannot_be_re_scored_stays_and_the_run_fails(published, tmp_path):
    with db.connect(published.url) as conn:
        record = vector_store.active_record(conn)
    user_tower = Path(record.user_tower_path)
    hidden = tmp_path / "user_tower.onnx"
    user_tower.rename(hidden)
    try:
        outcome = run_weekly_retrain(published.settings, QUICK_TRAINING)
    finally:
        hidden.rename(user_tower)
    assert not outcome.success
    assert any("the champion" in r and "could not be re-scored" in r for r in outcome.reasons), outcome.reasons
    assert _active(published.url) == record.version
    with db.connect(published.url) as conn:
        status, reason = conn.execute(
            "select status, status_reason from public.embedding_model_versions where model_type = 'item_tower' "
            "order by created_at desc limit 1").fetchone()
    assert status == "rejected" and "could not be re-scored" in reason
