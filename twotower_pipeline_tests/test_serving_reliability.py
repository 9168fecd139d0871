"""Invariant 1 under load: readers never see a half-switched model, while a retrain, a backfill,
an activation or a killed backfill happen; and new videos are embedded between retrains."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from twotower_pipeline import db, vector_store
from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.jobs import all_shards_tags, shard_range_tags
from twotower_pipeline.publishing import load_version, publish_item_vectors
from twotower_pipeline.retrain import run_weekly_retrain
from twotower_pipeline.sensors import new_videos_sensor
from twotower_pipeline.settings import PROJECT_ROOT
from twotower_pipeline_tests.conftest import PUBLISHABLE, QUICK, PipelineState, new_database, published_pipeline

SIZE = PUBLISHABLE
LIVE = {"mode": "replace", "versions": "live"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, postgres_server) -> PipelineState:
    with published_pipeline(tmp_path_factory.mktemp("home"), new_database(postgres_server, "r"), SIZE, QUICK) as state:
        yield state


def _active(url: str) -> str:
    with db.connect(url) as conn:
        return conn.execute("select version from public.embedding_model_versions "
                            "where is_active and model_type = 'item_tower'").fetchone()[0]


def _heavy_user(url: str) -> str:
    with db.connect(url) as conn:
        return str(conn.execute("select user_id from public.likes group by 1 order by count(*) desc limit 1")
                   .fetchone()[0])


class Reader(threading.Thread):
    """Calls recommend_videos in a loop, recording each answer's row count and versions."""

    def __init__(self, url: str, user: str) -> None:
        super().__init__(daemon=True)
        self.url, self.user = url, user
        self.answers: list[tuple[int, frozenset[str]]] = []
        self.errors: list[Exception] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with db.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                try:
                    rows = conn.execute("select video_id, model_version from public.recommend_videos(%s, 10)",
                                        (self.user,)).fetchall()
                    self.answers.append((len(rows), frozenset(r[1] for r in rows)))
                except Exception as error:  # noqa: BLE001 - any error is a failure of the invariant
                    self.errors.append(error)
                time.sleep(0.005)

    def versions_in_order(self) -> list[str]:
        order: list[str] = []
        for _, versions in self.answers:
            (version,) = versions
            if not order or order[-1] != version:
                order.append(version)
        return order


def _backfill(state: PipelineState, config: dict, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    job = build_definitions(state.settings).resolve_job_def("refresh_item_embeddings")
    return job.execute_in_process(instance=dg.DagsterInstance.get(), tags=tags,
                                  run_config={"ops": {"item_embeddings": {"config": config}}})


ITEM_EMBEDDINGS = dg.AssetKey("item_embeddings")


def _videos_by_shard(url: str) -> dict[str, int]:
    with db.connect(url) as conn:
        return dict(conn.execute("select left(id::text, 1), count(*) from public.videos group by 1").fetchall())


def _by_partition(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """The run's item_embeddings materialisations by partition (each partition exactly once), as plain values."""
    events = [record.event_log_entry.asset_materialization for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000).records]
    events = [event for event in events if event.asset_key == ITEM_EMBEDDINGS]
    partitions = [event.partition for event in events]
    assert len(partitions) == len(set(partitions)), partitions
    return {event.partition: {key: value.value for key, value in event.metadata.items()} for event in events}


def test_the_weekly_runs_one_step_gives_each_partition_its_own_numbers(served):
    """The weekly job writes all 16 shards in one step; each partition's materialisation has its own
    shard's rows, seconds, skips and norms, and the run's totals only under run_* names."""
    instance = dg.DagsterInstance.get()
    run_id = served.first.run_id
    counts = _videos_by_shard(served.url)  # nothing has changed the catalogue since the weekly run
    by_partition = _by_partition(instance, run_id)
    assert sorted(by_partition) == list(vector_store.SHARDS)
    (version,) = by_partition["3"]["versions"]
    for shard, metadata in by_partition.items():
        assert metadata["rows_written"] == counts.get(shard, 0), (shard, metadata)
        assert metadata["by_version"][version]["rows_written"] == counts.get(shard, 0)
        assert metadata["videos_skipped"] == {version: {}}
        assert metadata["seconds"] > 0
        assert all(abs(metadata[name] - 1) < 1e-3 for name in ("norm_min", "norm_mean", "norm_max")), metadata
        assert metadata["norm_min"] <= metadata["norm_mean"] <= metadata["norm_max"]
        assert metadata["run_partitions"] == "0...f (16 shards in one run)"
        assert metadata["run_rows_written"] == SIZE.videos
    assert sum(m["rows_written"] for m in by_partition.values()) == SIZE.videos
    assert sum(m["seconds"] for m in by_partition.values()) == pytest.approx(by_partition["0"]["run_seconds"])
    # The activation, which depends on item_embeddings, ran after that step in the same run.
    activations = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    assert dg.AssetKey("active_model_version") in {r.event_log_entry.asset_materialization.asset_key
                                                     for r in activations}
    assert _active(served.url) == version


CODE_LOCATION = "from twotower_pipeline.definitions import build_definitions\n\ndefs = build_definitions()\n"


def test_a_single_run_backfill_launched_by_the_daemon_gives_each_partition_its_own_numbers(served, tmp_path):
    """A backfill of four partitions, as the UI launches it and the daemon runs it (one run for the
    range: the single-run policy): each partition is materialised once, with its own shard's numbers,
    and the daemon counts the four partitions as materialised."""
    # Dagster has no public API to create an asset backfill or to run one daemon iteration: these are
    # the daemon's own internals (the UI creates the backfill through GraphQL; the daemon does the rest).
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    shards = ["3", "4", "5", "6"]
    # A test instance whose runs are launched synchronously, and the code location as the daemon loads it
    # (built in a fresh module, with this state's environment).
    (tmp_path / "dagster").mkdir()
    (tmp_path / "code_location.py").write_text(CODE_LOCATION)
    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(
        executable_path=sys.executable, python_file=str(tmp_path / "code_location.py"), attribute="defs",
        working_directory=str(PROJECT_ROOT)))
    backfill_id = f"test{uuid.uuid4().hex[:8]}"
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster"), set_dagster_home=False,
                              synchronous_run_coordinator=True, synchronous_run_launcher=True) as instance, \
            WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace:
        instance.add_backfill(PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id, asset_graph=workspace.create_request_context().asset_graph,
            partition_names=shards, asset_selection=[ITEM_EMBEDDINGS], backfill_timestamp=time.time(), tags={},
            dynamic_partitions_store=instance, all_partitions=False, title=None, description=None, run_config=None))
        for _ in range(5):
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
            if instance.get_backfill(backfill_id).status != BulkActionStatus.REQUESTED:
                break
        backfill = instance.get_backfill(backfill_id)
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
        materialized = backfill.asset_backfill_data.materialized_subset.get_partitions_subset(ITEM_EMBEDDINGS)
        assert set(materialized.get_partition_keys()) == set(shards)
        (run,) = instance.get_runs(dg.RunsFilter.for_backfill(backfill_id))
        assert shard_range_tags("3", "6").items() <= run.tags.items()  # one run for the range
        assert run.status == dg.DagsterRunStatus.SUCCESS
        by_partition = _by_partition(instance, run.run_id)

    counts = _videos_by_shard(served.url)
    assert sorted(by_partition) == shards
    for shard, metadata in by_partition.items():
        assert metadata["rows_written"] == counts[shard], (shard, metadata)
        assert metadata["run_rows_written"] == sum(counts[s] for s in shards)
        assert metadata["run_partitions"] == "3...6 (4 shards in one run)"
        assert metadata["rows_written"] < metadata["run_rows_written"]
        assert abs(metadata["norm_mean"] - 1) < 1e-3


def test_a_reader_sees_one_whole_version_through_a_retrain_an_activation_and_a_full_backfill(served):
    before = _active(served.url)
    reader = Reader(served.url, _heavy_user(served.url))
    reader.start()
    try:
        time.sleep(0.5)
        outcome = run_weekly_retrain(served.settings, QUICK)
        assert outcome.success, outcome.reasons
        after = _active(served.url)
        # A full backfill of the active version's vectors while it serves.
        assert _backfill(served, LIVE, all_shards_tags()).success
        time.sleep(0.5)
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert reader.errors == []
    assert len(reader.answers) > 50
    assert all(count == 10 and len(versions) == 1 for count, versions in reader.answers), \
        [a for a in reader.answers if a[0] != 10 or len(a[1]) != 1][:5]
    assert after != before
    assert reader.versions_in_order() == [before, after]  # the version changed exactly once


def test_a_backfill_killed_mid_partition_leaves_serving_intact_and_a_rerun_completes(served):
    version = _active(served.url)
    with db.connect(served.url) as conn:
        partition = conn.execute("select public.two_tower_partition_name('two_tower_item_embeddings', %s)",
                                 (version,)).fetchone()[0]
        shard = conn.execute("select left(id::text, 1) from public.videos group by 1 order by count(*) desc "
                             "limit 1").fetchone()[0]
        ids = [r[0] for r in conn.execute("select id::text from public.videos where left(id::text, 1) = %s "
                                          "order by id", (shard,))]
        # A video added after the last backfill, sorting in the middle of its shard.
        middle = ids[len(ids) // 2]
        new_video = middle[:-1] + ("0" if middle[-1] != "0" else "1")
        conn.execute("insert into public.videos (id, title, genre, maker, price, duration_seconds) "
                     "values (%s, 'added later', 'Drama', 'Maker', 1200, 3600) on conflict do nothing",
                     (new_video,))
        before = conn.execute(f'select count(*) from public."{partition}" where left(video_id::text, 1) = %s',
                              (shard,)).fetchone()[0]

    # Hold the new video's key in an open transaction: the backfill's COPY stops there, mid-partition.
    blocker = psycopg.connect(served.url)
    blocker.execute(f'insert into public."{partition}" (model_version, video_id, embedding) '
                    f"values (%s, %s, array_fill(0.125, array[64])::vector)", (version, new_video))
    env = {**os.environ, "DAGSTER_HOME": str(served.settings.dagster_home)}
    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m",
               "twotower_pipeline.definitions", "--select", "item_embeddings", "--partition", shard,
               "--config-json", '{"ops": {"item_embeddings": {"config": {"mode": "replace", "versions": "live"}}}}']
    writer = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        with db.connect(served.url, autocommit=True) as watch:
            while time.monotonic() < deadline:
                waiting = watch.execute("select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
                                        "and query ilike 'copy%%'").fetchone()[0]
                if waiting:
                    break
                assert writer.poll() is None, "the backfill ended before reaching the held row"
                time.sleep(0.5)
            else:
                pytest.fail("the backfill never reached the held row")
            os.killpg(writer.pid, signal.SIGKILL)
            writer.wait(timeout=30)
            user = _heavy_user(served.url)
            rows = watch.execute("select model_version from public.recommend_videos(%s, 10)", (user,)).fetchall()
            assert len(rows) == 10 and {r[0] for r in rows} == {version}
    finally:
        blocker.rollback()
        blocker.close()
        if writer.poll() is None:
            os.killpg(writer.pid, signal.SIGKILL)

    with db.connect(served.url) as conn:
        # Wait for the killed backend to be gone, then check nothing half-written remains.
        for _ in range(60):
            if not conn.execute("select count(*) from pg_stat_activity where query ilike 'copy%%' "
                                "and pid <> pg_backend_pid()").fetchone()[0]:
                break
            time.sleep(0.5)
        unchanged = conn.execute(f'select count(*) from public."{partition}" where left(video_id::text, 1) = %s',
                                 (shard,)).fetchone()[0]
    assert unchanged == before

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    with db.connect(served.url) as conn:
        count, distinct = conn.execute(
            f'select count(*), count(distinct video_id) from public."{partition}" where left(video_id::text, 1) = %s',
            (shard,)).fetchone()
        videos = conn.execute("select count(*) from public.videos where left(id::text, 1) = %s", (shard,)).fetchone()[0]
    assert count == distinct == videos == before + 1


def test_new_videos_get_vectors_from_the_sensor_without_a_full_re_embed(served):
    version = _active(served.url)
    instance = dg.DagsterInstance.get()
    resources = build_definitions(served.settings).resources
    context = dg.build_sensor_context(instance=instance, resources={"app_db": resources["app_db"]})
    assert isinstance(new_videos_sensor(context), dg.SkipReason)

    new_ids = ["a" + uuid.uuid4().hex[1:8] + "-0000-4000-8000-" + uuid.uuid4().hex[:12] for _ in range(3)]
    with db.connect(served.url) as conn:
        for video_id in new_ids:
            conn.execute("insert into public.videos (id, title, genre, maker, price, duration_seconds) "
                         "values (%s, 'brand new', 'Drama', 'Maker', 900, 1800)", (video_id,))
        total_before = conn.execute("select count(*) from public.two_tower_item_embeddings where model_version = %s",
                                    (version,)).fetchone()[0]
    request = new_videos_sensor(dg.build_sensor_context(instance=instance,
                                                        resources={"app_db": resources["app_db"]}))
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key_range == dg.PartitionKeyRange("a", "a")
    job = build_definitions(served.settings).resolve_job_def("refresh_item_embeddings")
    result = job.execute_in_process(instance=instance, tags=request.tags, run_config=request.run_config)
    assert result.success
    with db.connect(served.url) as conn:
        total_after = conn.execute("select count(*) from public.two_tower_item_embeddings where model_version = %s",
                                   (version,)).fetchone()[0]
        embedded = conn.execute("select count(*) from public.two_tower_item_embeddings where model_version = %s "
                                "and video_id = any(%s::uuid[])", (version, new_ids)).fetchone()[0]
    assert embedded == 3 and total_after == total_before + 3
    materialization = instance.get_latest_materialization_event(dg.AssetKey("item_embeddings")).asset_materialization
    assert materialization.partition == "a"
    with db.connect(served.url) as conn:
        shard_videos = conn.execute("select count(*) from public.videos where left(id::text, 1) = 'a'").fetchone()[0]
    # The partition's own numbers: its three new videos written, the rest of its shard left alone.
    assert materialization.metadata["rows_written"].value == 3
    assert materialization.metadata["videos_skipped"].value == {version: {"already embedded": shard_videos - 3}}
    assert isinstance(new_videos_sensor(dg.build_sensor_context(instance=instance,
                                                                resources={"app_db": resources["app_db"]})),
                      dg.SkipReason)


def test_with_a_candidate_in_flight_each_partition_reports_each_versions_numbers(served):
    """Mode 'missing' with versions 'live' writes the new videos of a range for the active version and a
    candidate whose vectors are being written: each partition has its own rows for each version."""
    url = served.url
    active = _active(url)
    candidate = f"tt-inflight-{uuid.uuid4().hex[:6]}"
    with db.connect(url) as conn:
        record = vector_store.version_record(conn, active)
        vector_store.register_version(
            conn, candidate, [vector_store.TowerRecord("user_tower", record.user_tower_path),
                              vector_store.TowerRecord("item_tower", record.item_tower_path)],
            feature_spec_path=record.feature_spec_path, mlflow_run_id=None, metrics={})
        vector_store.create_version_partitions(conn, candidate)
    try:
        with db.connect(url) as conn:
            in_flight = vector_store.version_record(conn, candidate)
        publish_item_vectors(url, load_version(in_flight), list(vector_store.SHARDS), datetime.now(UTC))
        new = {"b": 2, "c": 1}
        with db.connect(url) as conn:
            assert vector_store.live_versions(conn) == [active, candidate]
            for shard, n in new.items():
                for _ in range(n):
                    video_id = shard + uuid.uuid4().hex[1:8] + "-0000-4000-8000-" + uuid.uuid4().hex[:12]
                    conn.execute("insert into public.videos (id, title, genre, maker, price, duration_seconds) "
                                 "values (%s, 'in flight', 'Drama', 'Maker', 900, 1800)", (video_id,))
        result = _backfill(served, {"mode": "missing", "versions": "live"}, shard_range_tags("b", "c"))
        assert result.success
        counts = _videos_by_shard(url)
        by_partition = _by_partition(dg.DagsterInstance.get(), result.run_id)
        assert sorted(by_partition) == ["b", "c"]
        for shard, metadata in by_partition.items():
            assert metadata["versions"] == [active, candidate]
            assert metadata["rows_written"] == 2 * new[shard]
            assert metadata["videos_skipped"] == {v: {"already embedded": counts[shard] - new[shard]}
                                                  for v in (active, candidate)}
            for version in (active, candidate):
                numbers = metadata["by_version"][version]
                assert numbers["rows_written"] == new[shard]
                assert abs(numbers["norm_mean"] - 1) < 1e-3
            assert metadata["run_rows_written"] == 2 * sum(new.values())
    finally:
        with db.connect(url) as conn:
            vector_store.reject_version(conn, candidate, "a test's candidate in flight")
