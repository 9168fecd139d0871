"""Demo data: reproducible, the app's shape, structure a recommender can learn, and a loader
that never touches tables other than the seven it fills."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest

from twotower_pipeline.demo_data import (
    AGE_RANGES,
    DEMO_TABLES,
    LIKE_WINDOW,
    REGIONS,
    DemoData,
    DemoDataError,
    DemoSize,
    generate_demo_data,
    load_demo_data,
    oracle_scores,
    tiny_demo_size,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Big enough per user for statistics to be stable, small enough to generate in about a second.
STATS_SIZE = DemoSize(videos=5_000, users=300, likes=15_000, seed=11)

APP_COLUMNS = {
    "videos": ["id", "title", "description", "genre", "maker", "price", "duration_seconds", "created_at"],
    "tags": ["id", "name"],
    "video_tags": ["video_id", "tag_id"],
    "performers": ["id", "name"],
    "video_performers": ["video_id", "performer_id"],
    "likes": ["id", "user_id", "video_id", "created_at"],
    "profiles": ["id", "age_range", "region", "created_at"],
}
# sha256 (first 16 hex digits) of to_csv(index=False) of each frame of
# generate_demo_data(tiny_demo_size(), NOW), computed with the generator as it was before
# profiles were added (commit a6076c0). Profiles draw from a Generator of their own, so these
# must not move; only a numpy release that changes a Generator stream may (then re-pin).
BEFORE_PROFILES_TINY_CSV_SHA256 = {
    "videos": "f52a01fe648ce908",
    "tags": "cbe85d23d84b1f67",
    "video_tags": "6b47430a9d4704e3",
    "performers": "f2ba470b672274a7",
    "video_performers": "bc915e9181c189ea",
    "likes": "ba08e9520f561163",
}


@pytest.fixture(scope="module")
def tiny() -> DemoData:
    return generate_demo_data(tiny_demo_size(), NOW)


@pytest.fixture(scope="module")
def stats() -> DemoData:
    return generate_demo_data(STATS_SIZE, NOW)


def _likes_with_genre(data: DemoData) -> pd.DataFrame:
    genres = data.videos[["id", "genre"]].rename(columns={"id": "video_id"})
    return data.likes.merge(genres, on="video_id", validate="many_to_one")


def _mean_top3_genre_share(likes: pd.DataFrame) -> float:
    per_genre = likes.groupby(["user_id", "genre"]).size()
    top3 = per_genre.groupby(level=0, group_keys=False).nlargest(3).groupby(level=0).sum()
    return float((top3 / per_genre.groupby(level=0).sum()).mean())


def _mean_genre_shift(likes: pd.DataFrame, min_likes: int = 5) -> float:
    """Mean total-variation distance between each user's genre mix in the first and last month."""
    start = pd.Timestamp(NOW - LIKE_WINDOW)
    first = likes[likes.created_at < start + pd.Timedelta(days=30)]
    last = likes[likes.created_at >= pd.Timestamp(NOW) - pd.Timedelta(days=30)]
    a = first.groupby(["user_id", "genre"]).size().unstack(fill_value=0)
    b = last.groupby(["user_id", "genre"]).size().unstack(fill_value=0)
    users = a.index.intersection(b.index)
    genres = a.columns.union(b.columns)
    a = a.reindex(index=users, columns=genres, fill_value=0)
    b = b.reindex(index=users, columns=genres, fill_value=0)
    enough = (a.sum(axis=1) >= min_likes) & (b.sum(axis=1) >= min_likes)
    assert enough.sum() >= 50, "too few users active in both months to measure drift"
    a, b = a[enough], b[enough]
    return float((0.5 * (a.div(a.sum(axis=1), axis=0) - b.div(b.sum(axis=1), axis=0)).abs().sum(axis=1)).mean())


# -- generation ----------------------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_does_not(tiny: DemoData) -> None:
    again = generate_demo_data(tiny_demo_size(), NOW)
    for table in DEMO_TABLES:
        pd.testing.assert_frame_equal(getattr(tiny, table), getattr(again, table))

    other = generate_demo_data(tiny_demo_size(seed=8), NOW)
    assert set(other.videos.id).isdisjoint(tiny.videos.id)
    assert set(other.likes.user_id).isdisjoint(tiny.likes.user_id)
    assert not other.videos.title.equals(tiny.videos.title)
    assert set(other.profiles.id).isdisjoint(tiny.profiles.id)


def test_adding_profiles_left_the_other_tables_byte_identical(tiny: DemoData) -> None:
    for table, expected in BEFORE_PROFILES_TINY_CSV_SHA256.items():
        csv = getattr(tiny, table).to_csv(index=False).encode()
        assert hashlib.sha256(csv).hexdigest()[:16] == expected, table
    # Why they cannot move: the four parts the other tables come from use the same children of
    # the seed as before (spawn(5)'s first four are spawn(4)'s); profiles use the fifth.
    for before, now in zip(np.random.SeedSequence(7).spawn(4), np.random.SeedSequence(7).spawn(5)):
        assert before.spawn_key == now.spawn_key
        assert (np.random.default_rng(before).integers(2**62, size=8) == np.random.default_rng(now).integers(2**62, size=8)).all()


def test_frames_have_the_app_columns_exact_sizes_and_valid_ids(tiny: DemoData) -> None:
    size = tiny_demo_size()
    for table, columns in APP_COLUMNS.items():
        assert list(getattr(tiny, table).columns) == columns, table
    assert tiny.counts()["videos"] == size.videos
    assert tiny.counts()["likes"] == size.likes
    assert tiny.likes.user_id.nunique() == size.users
    for frame in (tiny.videos, tiny.tags, tiny.performers, tiny.likes):
        assert frame.id.is_unique
        assert all(uuid.UUID(value).version == 4 for value in frame.id)
    assert tiny.tags.name.is_unique and tiny.performers.name.is_unique
    assert len(tiny.tags) >= 20 and len(tiny.performers) >= 10

    assert set(tiny.video_tags.tag_id) <= set(tiny.tags.id)
    assert set(tiny.video_performers.performer_id) <= set(tiny.performers.id)
    assert not tiny.video_tags.duplicated().any() and not tiny.video_performers.duplicated().any()
    tags_per_video = tiny.video_tags.groupby("video_id").size().reindex(tiny.videos.id, fill_value=0)
    performers_per_video = tiny.video_performers.groupby("video_id").size().reindex(tiny.videos.id, fill_value=0)
    assert tags_per_video.between(3, 8).all()
    assert performers_per_video.between(1, 3).all()

    videos = tiny.videos
    assert videos.price.between(400, 6000).all() and videos.price.nunique() > 10
    assert videos.duration_seconds.between(600, 3 * 3600).all()
    assert videos.created_at.dt.tz is not None
    assert videos.created_at.between(pd.Timestamp(NOW - timedelta(days=3 * 366)), pd.Timestamp(NOW)).all()
    assert 15 <= videos.genre.nunique() <= 30


def test_every_user_has_at_least_five_likes_and_none_dominates(stats: DemoData) -> None:
    per_user = stats.likes.groupby("user_id").size()
    assert len(per_user) == STATS_SIZE.users
    assert per_user.sum() == STATS_SIZE.likes
    assert per_user.min() >= 5
    assert per_user.max() <= 0.05 * STATS_SIZE.likes
    assert per_user.max() >= 5 * per_user.median(), "activity should be heavy-tailed"


def test_likes_are_unique_inside_the_window_and_after_their_video(stats: DemoData) -> None:
    likes = stats.likes
    assert not likes.duplicated(["user_id", "video_id"]).any()
    assert likes.created_at.min() >= pd.Timestamp(NOW - LIKE_WINDOW)
    assert likes.created_at.max() <= pd.Timestamp(NOW)
    created = stats.videos.set_index("id").created_at
    assert likes.video_id.isin(created.index).all()
    assert (likes.created_at.to_numpy() > created.loc[likes.video_id].to_numpy()).all()


def test_users_like_a_few_genres_and_their_history_predicts_their_next_likes(stats: DemoData) -> None:
    likes = _likes_with_genre(stats)
    shuffled = likes.assign(genre=np.random.default_rng(0).permutation(likes.genre.to_numpy()))
    concentration = _mean_top3_genre_share(likes)
    assert 0.6 <= concentration <= 0.9, "strong but noisy taste"
    assert concentration >= _mean_top3_genre_share(shuffled) + 0.15

    cut = pd.Timestamp(NOW) - pd.Timedelta(days=30)
    history, future = likes[likes.created_at < cut], likes[likes.created_at >= cut]
    per_genre = history.groupby(["user_id", "genre"]).size()
    favourites = set(per_genre.groupby(level=0, group_keys=False).nlargest(3).index)
    own_hit = np.mean([(u, g) in favourites for u, g in zip(future.user_id, future.genre)])
    popular_hit = future.genre.isin(history.genre.value_counts().index[:3]).mean()
    assert own_hit >= popular_hit + 0.1


def test_popular_videos_get_a_bounded_share_of_likes(stats: DemoData) -> None:
    per_video = stats.likes.video_id.value_counts()
    top_share = per_video.iloc[: len(stats.videos) // 100].sum() / len(stats.likes)
    assert 0.05 <= top_share <= 0.25
    assert per_video.iloc[0] / len(stats.likes) < 0.02
    assert (per_video.reindex(stats.videos.id, fill_value=0) == 0).mean() > 0.1, "a long tail nobody liked"


def test_tastes_drift_between_the_first_and_last_month(stats: DemoData) -> None:
    likes = _likes_with_genre(stats)
    # Baseline: the same likes with times shuffled within each user, so only noise differs.
    rng = np.random.default_rng(0)
    order = np.lexsort((rng.random(len(likes)), likes.user_id.to_numpy()))
    by_user = likes.iloc[np.argsort(likes.user_id.to_numpy(), kind="stable")].reset_index(drop=True)
    no_drift = by_user.assign(created_at=likes.created_at.iloc[order].to_numpy())
    assert _mean_genre_shift(likes) >= _mean_genre_shift(no_drift) + 0.1


def test_titles_carry_genre_signal_with_noise(stats: DemoData) -> None:
    videos = stats.videos
    words = videos.assign(word=videos.title.str.lower().str.split(r"[^a-z']+", regex=True)).explode("word")
    words = words[words.word.str.len() > 2]
    # Learn each word's most frequent genre on half the catalogue, guess the other half's.
    learn = words.id.isin(videos.id.iloc[::2])
    word_genre = words[learn].groupby(["word", "genre"]).size().groupby(level=0).idxmax().str[1]
    held_out = words[~learn].assign(guess=lambda w: w.word.map(word_genre)).dropna(subset=["guess"])
    guessed = held_out.groupby("id").guess.agg(lambda g: g.value_counts().index[0])
    accuracy = (guessed == videos.set_index("id").genre.loc[guessed.index]).mean()
    assert 0.3 <= accuracy <= 0.97


def test_about_four_in_five_users_have_a_profile_with_allowed_values(tiny: DemoData, stats: DemoData) -> None:
    for data, users in ((tiny, tiny_demo_size().users), (stats, STATS_SIZE.users)):
        profiles = data.profiles
        assert 0.75 <= len(profiles) / users <= 0.85
        assert profiles.id.is_unique and set(profiles.id) <= set(data.likes.user_id)
        assert all(uuid.UUID(value).version == 4 for value in profiles.id)
        assert (profiles.age_range.isin(AGE_RANGES) | profiles.age_range.isna()).all()
        assert (profiles.region.isin(REGIONS) | profiles.region.isna()).all()
        # Signed up before their first like.
        first_like = data.likes.groupby("user_id").created_at.min()
        assert profiles.created_at.dt.tz is not None
        assert (profiles.created_at.to_numpy() < first_like.loc[profiles.id].to_numpy()).all()

    profiles = stats.profiles
    incomplete = profiles.age_range.isna() | profiles.region.isna()
    assert 0.02 <= incomplete.mean() <= 0.1
    assert profiles.age_range.isna().any() and profiles.region.isna().any()
    assert set(profiles.age_range.dropna()) == set(AGE_RANGES)
    assert set(profiles.region.dropna()) == set(REGIONS)
    assert list(profiles.region.value_counts().index[:2]) == ["Kanto", "Kansai"]
    assert profiles.region.value_counts(normalize=True).iloc[0] >= 0.25


def _age_genre_trend(mix: np.ndarray, age: np.ndarray) -> tuple[float, np.ndarray]:
    """How much users' genre shares move with their age range: per genre, the correlation
    between age-range index and the user's share of that genre; and their sum of squares
    (0 when every age range likes the same genres, in expectation ~genres/users by chance)."""
    a = (age - age.mean()) / age.std()
    shares = (mix - mix.mean(axis=0)) / np.maximum(mix.std(axis=0), 1e-12)
    correlation = (a[:, None] * shares).mean(axis=0)
    return float((correlation**2).sum()), correlation


def test_age_range_predicts_genre_taste_better_than_shuffled_age_ranges(stats: DemoData) -> None:
    likes = _likes_with_genre(stats)
    counts = likes.groupby(["user_id", "genre"]).size().unstack(fill_value=0)
    mix = counts.div(counts.sum(axis=1), axis=0)  # each user's genre mix, every user counts once
    known = stats.profiles.dropna(subset=["age_range"])
    mix = mix.loc[known.id].to_numpy()
    age = known.age_range.map({label: i for i, label in enumerate(AGE_RANGES)}).to_numpy(dtype=float)

    observed, correlation = _age_genre_trend(mix, age)
    rng = np.random.default_rng(0)
    shuffled = np.array([_age_genre_trend(mix, rng.permutation(age))[0] for _ in range(100)])
    # Real: far above what age ranges assigned at random give (ranges shuffled among users).
    assert observed > shuffled.max()
    assert (observed - shuffled.mean()) / shuffled.std() >= 4
    # Modest: no genre is anywhere near decided by age.
    assert np.abs(correlation).max() < 0.5


def _held_out_likes(data: DemoData, fraction: float = 0.2) -> tuple[pd.DataFrame, list[list[str]]]:
    """Each user's last ``fraction`` of likes (at least one), with the videos they liked before each."""
    likes = data.likes.sort_values(["user_id", "created_at", "video_id"], kind="stable").reset_index(drop=True)
    position = likes.groupby("user_id").cumcount()
    count = likes.groupby("user_id").video_id.transform("size")
    held = likes[position >= count - np.maximum(1, np.floor(fraction * count)).astype(int)]
    earlier = likes.groupby("user_id").video_id.agg(list)
    before = [earlier[user][:k] for user, k in zip(held.user_id, position[held.index])]
    return held.assign(at_s=held.created_at.astype("int64") // 10**9), before


def test_oracle_ranks_actual_next_likes_far_above_random(stats: DemoData) -> None:
    truth = stats.truth
    assert truth is not None
    assert list(truth.video_ids) == list(stats.videos.id)
    assert set(truth.user_ids) == set(stats.likes.user_id)
    held, before = _held_out_likes(stats)
    users, at_s = held.user_id.to_numpy(), held.at_s.to_numpy()
    scores = oracle_scores(truth, users, at_s, stats.videos.id, exclude=before)

    # A distribution over the videos available then and not liked yet; the rest are impossible.
    assert np.allclose(np.exp(scores).sum(axis=1), 1.0)
    impossible = stats.videos.created_at.to_numpy()[None, :] >= held.created_at.to_numpy()[:, None]
    for i, earlier in enumerate(before):
        impossible[i, truth.video_rows(earlier)] = True
    assert np.isneginf(scores[impossible]).all() and np.isfinite(scores[~impossible]).all()
    liked = truth.video_rows(held.video_id)
    own = scores[np.arange(len(held)), liked]
    assert np.isfinite(own).all()

    # Percentile rank of each held-out like among that moment's candidates: 0.5 for a random
    # ranker; the generator's own probabilities put them near the top.
    candidates = np.isfinite(scores).sum(axis=1)
    above = (scores > own[:, None]).sum(axis=1) + 0.5 * ((scores == own[:, None]).sum(axis=1) - 1)
    percentile = above / candidates
    assert percentile.mean() < 0.1
    assert np.median(percentile) < 0.05
    assert own.mean() > -np.log(candidates).mean() + 1.5, "far likelier than uniform"

    # The drift is used the right way round: swapping start and end tastes fits the likes worse.
    swapped = replace(truth, start_taste=truth.end_taste, end_taste=truth.start_taste)
    swapped_own = oracle_scores(swapped, users, at_s, stats.videos.id, exclude=before)[np.arange(len(held)), liked]
    assert own.mean() > swapped_own.mean() + 0.5


def test_keeping_the_truth_changed_no_table(tiny: DemoData) -> None:
    assert tiny.truth is not None
    assert tiny.counts() == {t: len(getattr(tiny, t)) for t in DEMO_TABLES}
    for table, expected in BEFORE_PROFILES_TINY_CSV_SHA256.items():
        csv = getattr(tiny, table).to_csv(index=False).encode()
        assert hashlib.sha256(csv).hexdigest()[:16] == expected, table
    # Candidates in any order, a user at several times; unknown ids are refused.
    truth, video_ids = tiny.truth, tiny.videos.id.to_numpy()
    user = truth.user_ids[0]
    late = int(tiny.videos.created_at.max().timestamp()) + 1
    forward = oracle_scores(truth, [user, user], [late, late - 30 * 86_400], video_ids)
    backward = oracle_scores(truth, [user], [late], video_ids[::-1])
    assert np.allclose(forward[0], backward[0][::-1], rtol=0, atol=1e-9)
    assert np.isneginf(forward[1]).sum() > np.isneginf(forward[0]).sum() == 0
    with pytest.raises(DemoDataError, match="unknown user"):
        oracle_scores(truth, ["not-a-user"], [late], video_ids)


def test_unworkable_sizes_and_naive_now_are_refused() -> None:
    with pytest.raises(DemoDataError, match="at least 5 likes"):
        generate_demo_data(DemoSize(videos=600, users=100, likes=400), NOW)
    with pytest.raises(DemoDataError, match="timezone-aware"):
        generate_demo_data(tiny_demo_size(), NOW.replace(tzinfo=None))


# -- loading -------------------------------------------------------------------------------


def _counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {t: conn.execute(f"select count(*) from public.{t}").fetchone()[0] for t in DEMO_TABLES}


def test_load_round_trips_rows_and_text(database_url: str, tiny: DemoData) -> None:
    with psycopg.connect(database_url) as conn:
        returned = load_demo_data(conn, tiny)
    assert returned == tiny.counts()
    assert _counts(database_url) == tiny.counts()

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select id::text, title, description, genre, maker, price::float8, duration_seconds, created_at "
            "from public.videos"
        ).fetchall()
        liked = conn.execute("select id::text, user_id::text, video_id::text, created_at from public.likes").fetchall()
    stored = pd.DataFrame(rows, columns=APP_COLUMNS["videos"]).set_index("id").loc[tiny.videos.id]
    expected = tiny.videos.set_index("id")
    assert (stored.description == expected.description).all()  # newlines, quotes, commas intact
    assert expected.description.str.contains("\n").all() and expected.description.str.contains('"').all()
    for column in ("title", "genre", "maker", "price", "duration_seconds"):
        assert (stored[column] == expected[column]).all(), column
    assert (pd.to_datetime(stored.created_at, utc=True) == expected.created_at).all()
    stored_likes = pd.DataFrame(liked, columns=APP_COLUMNS["likes"]).set_index("id").loc[tiny.likes.id]
    assert (stored_likes.user_id == tiny.likes.user_id.to_numpy()).all()
    assert (pd.to_datetime(stored_likes.created_at, utc=True) == tiny.likes.created_at.to_numpy()).all()


def test_load_round_trips_profiles_with_their_nulls(database_url: str, tiny: DemoData) -> None:
    assert tiny.profiles.age_range.isna().any() and tiny.profiles.region.isna().any()
    with psycopg.connect(database_url) as conn:
        assert load_demo_data(conn, tiny)["profiles"] == len(tiny.profiles)
        rows = conn.execute("select id::text, age_range, region, created_at from public.profiles").fetchall()
    stored = pd.DataFrame(rows, columns=APP_COLUMNS["profiles"]).set_index("id").loc[tiny.profiles.id]
    expected = tiny.profiles.set_index("id")
    for column in ("age_range", "region"):  # NULL stays NULL (not ''), values stay as they were
        assert stored[column].isna().equals(expected[column].isna()), column
        assert (stored[column].dropna() == expected[column].dropna()).all(), column
    assert (pd.to_datetime(stored.created_at, utc=True) == expected.created_at).all()


def test_load_refuses_when_only_profiles_has_rows(database_url: str, tiny: DemoData) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("insert into public.profiles (id, region) values (%s, 'Kanto')", (uuid.uuid4(),))
    with psycopg.connect(database_url) as conn, pytest.raises(DemoDataError, match="profiles has 1 row"):
        load_demo_data(conn, tiny)
    assert _counts(database_url) == {t: (1 if t == "profiles" else 0) for t in DEMO_TABLES}


def test_load_refuses_tables_with_rows_and_changes_nothing(database_url: str, tiny: DemoData) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("insert into public.tags (name) values ('already here')")
    with psycopg.connect(database_url) as conn, pytest.raises(DemoDataError) as refused:
        load_demo_data(conn, tiny)
    message = str(refused.value)
    assert "tags has 1 row" in message and "--reset" in message
    assert _counts(database_url) == {t: (1 if t == "tags" else 0) for t in DEMO_TABLES}


def test_replace_empties_only_the_demo_tables(database_url: str, tiny: DemoData) -> None:
    kept_user = uuid.uuid4()
    with psycopg.connect(database_url) as conn:
        load_demo_data(conn, tiny)
        conn.execute("insert into public.user_embeddings (user_id, embedding) values (%s, null)", (kept_user,))
    other = generate_demo_data(tiny_demo_size(seed=8), NOW)

    with psycopg.connect(database_url) as conn:
        assert load_demo_data(conn, other, replace=True) == other.counts()

    assert _counts(database_url) == other.counts()
    with psycopg.connect(database_url) as conn:
        video_ids = {r[0] for r in conn.execute("select id::text from public.videos")}
        profile_ids = {r[0] for r in conn.execute("select id::text from public.profiles")}
        embeddings = conn.execute("select user_id from public.user_embeddings").fetchall()
    assert video_ids == set(other.videos.id)
    assert profile_ids == set(other.profiles.id)  # the first load's profiles were truncated too
    assert embeddings == [(kept_user,)]


def test_replace_refuses_to_delete_the_apps_video_embeddings(database_url: str, tiny: DemoData) -> None:
    with psycopg.connect(database_url) as conn:
        load_demo_data(conn, tiny)
        conn.execute(
            "insert into public.video_embeddings (video_id, embedding) values (%s, null)", (tiny.videos.id[0],)
        )
    with psycopg.connect(database_url) as conn, pytest.raises(DemoDataError, match="video_embeddings"):
        load_demo_data(conn, generate_demo_data(tiny_demo_size(seed=8), NOW), replace=True)
    assert _counts(database_url) == tiny.counts()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from public.video_embeddings").fetchone()[0] == 1
