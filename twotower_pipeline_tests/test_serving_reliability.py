"""Invariant 1 under load: readers never see a half-switched model, while a retrain, a backfill,
an activation or a killed backfill happen; and new videos are embedded between retrains."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from twotower_pipeline import db
from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.jobs import all_shards_tags
from twotower_pipeline.retrain import run_weekly_retrain
from twotower_pipeline.sensors import new_videos_sensor
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
    skipped = materialization.metadata["videos_skipped"].value
    assert skipped[version]["already embedded"] > 0  # the rest of the shard was left alone
    assert isinstance(new_videos_sensor(dg.build_sensor_context(instance=instance,
                                                                resources={"app_db": resources["app_db"]})),
                      dg.SkipReason)
