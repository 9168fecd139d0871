"""Model versions and vectors in pgvector: idempotent writes, an all-or-nothing switch, and
recommend_videos on real PostgreSQL."""

import threading
import uuid
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from twotower_pipeline import db, vector_store
from twotower_pipeline.app_data import catalogue_batches, read_catalogue
from twotower_pipeline.vector_store import ActivationRefused, TowerRecord


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 64)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _seed_app(conn: psycopg.Connection, videos: int, users: int, likes_per_user: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    video_ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(videos)]
    user_ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(users)]
    with conn.cursor() as cur:
        cur.executemany("insert into public.videos (id, title, genre) values (%s, %s, 'g')",
                        [(v, f"video {i}") for i, v in enumerate(video_ids)])
        cur.executemany(
            "insert into public.likes (user_id, video_id, created_at) values (%s, %s, now() - interval '1 day')",
            [(u, video_ids[(i * 3 + k) % videos]) for i, u in enumerate(user_ids) for k in range(likes_per_user)],
        )
    return video_ids, user_ids


def _publish(conn, version: str, video_ids, user_ids, seed: int, shards=vector_store.SHARDS):
    rng = np.random.default_rng(seed)
    vector_store.register_version(
        conn, version, [TowerRecord("user_tower", f"/m/{version}/u.onnx"), TowerRecord("item_tower", f"/m/{version}/i.onnx")],
        feature_spec_path=f"/m/{version}/spec.json", mlflow_run_id=None, metrics={"recall_at_50": 0.3},
    )
    vector_store.create_version_partitions(conn, version)
    chosen = [v for v in video_ids if v[0] in shards]
    vector_store.write_item_vectors(conn, version, list(shards), chosen, _unit(rng, len(chosen)),
                                    np.arange(len(chosen), dtype=np.float32))
    vector_store.write_user_vectors(conn, version, user_ids, _unit(rng, len(user_ids)),
                                    [datetime.now(UTC)] * len(user_ids))
    vector_store.build_item_index(conn, version)


def test_rewriting_a_shard_replaces_its_rows(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 200, 5, 3)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
        shard = video_ids[0][0]
        in_shard = [v for v in video_ids if v[0] == shard]
        for _ in range(2):
            vector_store.write_item_vectors(conn, "v1", [shard], in_shard, _unit(np.random.default_rng(2), len(in_shard)),
                                            np.zeros(len(in_shard)))
        count = conn.execute("select count(*) from public.two_tower_item_embeddings where model_version = 'v1'").fetchone()[0]
    assert count == len(video_ids)


def test_two_writers_of_one_shard_at_once_leave_the_same_rows_as_one(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 300, 3, 2)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
    shard = video_ids[0][0]
    in_shard = [v for v in video_ids if v[0] == shard]
    vectors = _unit(np.random.default_rng(3), len(in_shard))
    errors = []

    def write():
        try:
            with db.connect(database_url) as conn:
                vector_store.write_item_vectors(conn, "v1", [shard], in_shard, vectors, np.ones(len(in_shard)))
        except Exception as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.connect(database_url) as conn:
        rows = conn.execute(
            "select count(*), count(distinct video_id) from public.two_tower_item_embeddings "
            "where model_version = 'v1' and left(video_id::text, 1) = %s", (shard,)
        ).fetchone()
    assert rows == (len(in_shard), len(in_shard))


def test_activation_with_a_missing_partition_is_refused_naming_it(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 300, 5, 3)
        missing = video_ids[0][0]
        _publish(conn, "v1", video_ids, user_ids, seed=1, shards=[s for s in vector_store.SHARDS if s != missing])
        with pytest.raises(ActivationRefused, match=rf"partitions missing videos: {missing} \("):
            vector_store.activate_version(conn, "v1")
        assert vector_store.active_version(conn) is None


def test_activation_switches_both_towers_and_recommend_videos_serves_the_new_version(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 400, 10, 5)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
        assert vector_store.activate_version(conn, "v1").previous is None
        _publish(conn, "v2", video_ids, user_ids, seed=2)
        assert vector_store.activate_version(conn, "v2").previous == "v1"
        assert vector_store.activate_version(conn, "v2").already_active  # a retried step changes nothing
        states = conn.execute(
            "select version, model_type, is_active, status from public.embedding_model_versions order by 1, 2"
        ).fetchall()
        assert states == [("v1", "item_tower", False, "retired"), ("v1", "user_tower", False, "retired"),
                          ("v2", "item_tower", True, "active"), ("v2", "user_tower", True, "active")]

        user = user_ids[0]
        rows = conn.execute("select video_id::text, score, model_version from public.recommend_videos(%s, 10)",
                            (user,)).fetchall()
        liked = {r[0] for r in conn.execute("select video_id::text from public.likes where user_id = %s", (user,))}
        exact = conn.execute(
            "select e.video_id::text from public.two_tower_item_embeddings e, public.two_tower_user_embeddings u "
            "where e.model_version = 'v2' and u.model_version = 'v2' and u.user_id = %s "
            "and e.video_id <> all(%s::uuid[]) order by e.embedding <#> u.embedding limit 10",
            (user, list(liked)),
        ).fetchall()
    assert len(rows) == 10
    assert {r[2] for r in rows} == {"v2"}
    assert not liked & {r[0] for r in rows}
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
    assert [r[0] for r in rows] == [r[0] for r in exact]


def test_a_user_without_a_vector_gets_popular_videos_they_have_not_liked(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 300, 5, 3)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
        vector_store.activate_version(conn, "v1")
        stranger = str(uuid.uuid4())
        rows = conn.execute("select video_id::text, score from public.recommend_videos(%s, 5)", (stranger,)).fetchall()
        top = conn.execute(
            "select video_id::text from public.two_tower_item_embeddings where model_version = 'v1' "
            "order by popularity desc, video_id limit 5"
        ).fetchall()
    assert [r[0] for r in rows] == [r[0] for r in top]


def test_with_no_active_model_recommend_videos_falls_back_to_recent_likes(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 50, 20, 4)
        rows = conn.execute("select video_id::text, score, model_version from public.recommend_videos(%s, 3)",
                            (str(uuid.uuid4()),)).fetchall()
        counts = dict(conn.execute("select video_id::text, count(*) from public.likes group by 1").fetchall())
    assert len(rows) == 3 and {r[2] for r in rows} == {"popularity"}
    assert [r[1] for r in rows] == sorted((counts[r[0]] for r in rows), reverse=True)
    assert rows[0][1] == max(counts.values())


def test_with_no_active_model_a_quiet_month_still_gets_the_most_liked_videos(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 50, 20, 4)
        conn.execute("update public.likes set created_at = now() - interval '90 days'")
        rows = conn.execute("select video_id::text from public.recommend_videos(%s, 3)",
                            (str(uuid.uuid4()),)).fetchall()
        counts = dict(conn.execute("select video_id::text, count(*) from public.likes group by 1").fetchall())
    assert len(rows) == 3, "nothing liked in the last 30 days must not empty the list"
    assert [counts[r[0]] for r in rows] == sorted(counts.values(), reverse=True)[:3]


def test_a_user_without_likes_gets_their_segments_popular_videos_then_the_overall_order(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 300, 5, 3)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
        listed = [video_ids[7], video_ids[3], user_liked := conn.execute(
            "select video_id::text from public.likes limit 1").fetchone()[0]]
        vector_store.write_popular_videos(conn, "v1", [("25-34", "Kanto", listed, [0.3, 0.2, 0.1])])
        vector_store.activate_version(conn, "v1")
        liker = conn.execute("select user_id::text from public.likes where video_id = %s limit 1",
                             (user_liked,)).fetchone()[0]
        newcomer, elsewhere = str(uuid.uuid4()), str(uuid.uuid4())
        conn.execute("insert into public.profiles (id, age_range, region) values (%s, '25-34', 'Kanto'), "
                     "(%s, '25-34', 'Tohoku'), (%s, '25-34', 'Kanto')", (newcomer, elsewhere, liker))
        conn.execute("delete from public.two_tower_user_embeddings where user_id = %s", (liker,))
        overall = [r[0] for r in conn.execute(
            "select video_id::text from public.two_tower_item_embeddings where model_version = 'v1' "
            "order by popularity desc, video_id").fetchall()]

        def served(user: str, k: int) -> list[str]:
            return [r[0] for r in conn.execute("select video_id::text from public.recommend_videos(%s, %s)",
                                               (user, k)).fetchall()]

        assert served(newcomer, 5) == listed + [v for v in overall if v not in listed][:2]
        assert served(elsewhere, 5) == overall[:5]  # no list for that segment: the overall order
        # A user without a vector but with likes: the segment's list and the overall order, minus their likes.
        mine = {r[0] for r in conn.execute("select video_id::text from public.likes where user_id = %s", (liker,))}
        assert served(liker, 5) == [v for v in listed + [v for v in overall if v not in listed] if v not in mine][:5]


def test_dropping_a_version_drops_its_cold_start_lists(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 50, 3, 2)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
        vector_store.write_popular_videos(conn, "v1", [("25-34", "", video_ids[:3], [3, 2, 1])])
        conn.execute("select public.two_tower_drop_version('v1')")
        assert conn.execute("select count(*) from public.two_tower_popular_videos").fetchone()[0] == 0


def test_recommend_videos_rejects_a_limit_out_of_range(database_url):
    with db.connect(database_url) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_limit must be between 1 and 1000"):
            conn.execute("select * from public.recommend_videos(gen_random_uuid(), 0)")


def test_retention_keeps_the_versions_that_served_last_and_drops_rejected_ones(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 100, 3, 2)
        dropped = []
        for i, version in enumerate(["v1", "v2", "v3", "v4"]):
            _publish(conn, version, video_ids, user_ids, seed=i)
            dropped += vector_store.activate_version(conn, version, keep_versions=2).dropped
        assert dropped == ["v1", "v2"]
        assert vector_store.has_vectors(conn, "v3") and vector_store.has_vectors(conn, "v4")
        with pytest.raises(ActivationRefused, match="no stored vectors"):
            vector_store.activate_version(conn, "v2")
        assert vector_store.rollback_target(conn) == "v3"

        _publish(conn, "v5", video_ids, user_ids, seed=5)  # a candidate in flight is kept...
        assert vector_store.drop_old_versions(conn, keep=2) == []
        vector_store.reject_version(conn, "v5", "worse than v4")  # ...a rejected one is not
        assert not vector_store.has_vectors(conn, "v5")
        assert vector_store.rollback_target(conn) == "v3"  # rejected versions never push it out
        assert vector_store.active_version(conn) == "v4"


def test_activation_refuses_to_replace_a_champion_other_than_the_one_compared_with(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 100, 3, 2)
        for version in ("v1", "v2", "v3"):
            _publish(conn, version, video_ids, user_ids, seed=1)
        vector_store.activate_version(conn, "v1")
        vector_store.activate_version(conn, "v2")  # e.g. a rollback or another run, meanwhile
        with pytest.raises(ActivationRefused, match="changed from v1 to v2"):
            vector_store.activate_version(conn, "v3", expected_active="v1")
        assert vector_store.active_version(conn) == "v2"


def test_vectors_of_the_wrong_size_or_a_column_altered_by_hand_are_refused(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 50, 3, 2)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
        with pytest.raises(ValueError, match=r"vector\(64\) but the model makes 32-d vectors"):
            vector_store.write_item_vectors(conn, "v1", ["0"], video_ids[:1], np.ones((1, 32), np.float32), np.ones(1))
    with db.connect(database_url) as conn:
        conn.execute("alter table public.two_tower_user_embeddings alter column embedding type vector(32) "
                     "using subvector(embedding, 1, 32)")
        with pytest.raises(ValueError, match=r"two_tower_user_embeddings.embedding is vector\(32\) .* 64-d"):
            vector_store.write_user_vectors(conn, "v1", user_ids, _unit(np.random.default_rng(0), len(user_ids)),
                                            [datetime.now(UTC)] * len(user_ids))


def test_a_video_deleted_from_the_catalogue_is_never_recommended(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 200, 5, 3)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
        vector_store.activate_version(conn, "v1")
        user = user_ids[0]
        top = conn.execute("select video_id::text from public.recommend_videos(%s, 1)", (user,)).fetchone()[0]
        stranger_top = conn.execute("select video_id::text from public.recommend_videos(gen_random_uuid(), 1)"
                                    ).fetchone()[0]
        conn.execute("delete from public.videos where id = any(%s::uuid[])", ([top, stranger_top],))
        served = {r[0] for r in conn.execute("select video_id::text from public.recommend_videos(%s, 50)", (user,))}
        popular = {r[0] for r in conn.execute(
            "select video_id::text from public.recommend_videos(gen_random_uuid(), 50)")}
    assert top not in served and len(served) == 50
    assert stranger_top not in popular and len(popular) == 50


def test_the_catalogue_streams_in_chunks_by_shard_and_refuses_a_shard_that_is_not_a_hex_digit(database_url):
    with db.connect(database_url) as conn:
        video_ids, _ = _seed_app(conn, 120, 2, 2)
    whole = read_catalogue(database_url)
    assert whole["id"].tolist() == sorted(video_ids)
    chunks = list(catalogue_batches(database_url, ["0", "a"], rows=7))
    assert max(len(chunk) for chunk in chunks) == 7 and len(chunks) > 1
    assert [v for chunk in chunks for v in chunk["id"]] == sorted(v for v in video_ids if v[0] in "0a")
    with pytest.raises(ValueError, match=r"first hex digit of a video id \(0-9, a-f\), got \['g'\]"):
        read_catalogue(database_url, ["0", "g"])


def test_an_item_vector_for_an_id_that_is_not_a_uuid_is_refused_naming_it_and_nothing_is_written(database_url):
    with db.connect(database_url) as conn:
        video_ids, user_ids = _seed_app(conn, 60, 3, 2)
        _publish(conn, "v1", video_ids, user_ids, seed=1)
    shard = video_ids[0][0]
    in_shard = [v for v in video_ids if v[0] == shard]
    with pytest.raises(ValueError, match="video id 'not-a-video' is not a UUID"):
        with db.connect(database_url) as conn:
            vector_store.write_item_vectors(conn, "v1", [shard], in_shard + ["not-a-video"],
                                            _unit(np.random.default_rng(3), len(in_shard) + 1),
                                            np.zeros(len(in_shard) + 1))
    with db.connect(database_url) as conn:
        kept = conn.execute("select count(*) from public.two_tower_item_embeddings where model_version = 'v1' "
                            "and left(video_id::text, 1) = %s", (shard,)).fetchone()[0]
    assert kept == len(in_shard)
