"""Publishing a trained version: item and user vectors computed with its ONNX towers, and its
cold-start lists, written to pgvector, and the switch to it.

Vectors are computed from what the app's database holds at the time of writing (new videos
and new likes included), with the feature preparation exported with the version, in ONNX
Runtime: the same graph and the same transformation the Edge Functions use. What is computed
is defined once, in :mod:`twotower_pipeline.model.serving_path`, which the run's evaluation
ranks with too.
"""

from __future__ import annotations

import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy

from twotower_pipeline import db, item_stream, vector_store
from twotower_pipeline.app_data import (
    CATALOGUE_BATCH_ROWS,
    catalogue_tables,
    read_catalogue,
    read_likes,
    read_profiles,
    read_video_ids,
)
from twotower_pipeline.model.features import POPULARITY_WINDOW_DAYS, FeatureSpec
from twotower_pipeline.model.onnx_runtime import onnx_session, run_onnx
from twotower_pipeline.model.serving_path import (
    POPULARITY_HORIZON_DAYS,
    SERVED_BY_POPULARITY,
    SERVED_BY_SEGMENT,
    SERVED_BY_VECTOR,
    PopularVideos,
    Snapshot,
    popular_videos,
    popularity_inputs,
    user_histories,
    video_popularity,
)
from twotower_pipeline.model_files import local_copy
from twotower_pipeline.validation import clean_catalogue, clean_likes

_ONNX_BATCH = 4096


@dataclass
class ServingModel:
    """One version's ONNX towers and feature preparation, loaded once per step."""

    version: str
    spec: FeatureSpec
    user_tower_path: Path
    item_tower_path: Path

    def __post_init__(self) -> None:
        self._user = onnx_session(self.user_tower_path)
        self._item = onnx_session(self.item_tower_path)

    @classmethod
    def load(cls, version: str, user_tower_path: str, item_tower_path: str, feature_spec_path: str,
             cache: Path | None = None) -> ServingModel:
        """Load a version's towers and feature spec from local paths, or from object-storage URLs through
        ``cache`` (the model store's cache folder; by default one in the system's temporary folder)."""
        cache = cache if cache is not None else Path(tempfile.gettempdir()) / "twotower-model-cache"
        return cls(version, FeatureSpec.load(local_copy(feature_spec_path, cache)),
                   local_copy(user_tower_path, cache), local_copy(item_tower_path, cache))

    def embed_items(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return _batched(self._item, inputs, len(next(iter(inputs.values()))))

    def embed_users(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return _batched(self._user, inputs, len(next(iter(inputs.values()))))


def _batched(session, inputs: dict[str, np.ndarray], n: int) -> np.ndarray:
    out = np.zeros((n, 64), dtype=np.float32)
    for start in range(0, n, _ONNX_BATCH):
        chunk = {k: v[start:start + _ONNX_BATCH] for k, v in inputs.items()}
        result = run_onnx(session, chunk)
        if out.shape[1] != result.shape[1]:
            out = np.zeros((n, result.shape[1]), dtype=np.float32)
        out[start:start + _ONNX_BATCH] = result
    return out


@dataclass
class ShardReport:
    """One catalogue shard's part of an item-vector write (item vectors only)."""

    written: int = 0
    # The shard's share of the write's time: the shards of one write are read, embedded and copied
    # together, so each phase's time is split between them by their rows (exact for one shard).
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    norm_min: float = 0.0
    norm_mean: float = 0.0
    norm_max: float = 0.0


@dataclass
class EmbeddingReport:
    written: int
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # read, features, inference, write
    norm_min: float = 0.0
    norm_mean: float = 0.0
    norm_max: float = 0.0
    per_shard: dict[str, int] = field(default_factory=dict)
    shards: dict[str, ShardReport] = field(default_factory=dict)  # each shard's numbers (item vectors)
    segments: int = 0  # cold-start lists written (user vectors)
    served_by: dict[str, int] = field(default_factory=dict)  # users served each way (user vectors)


def _norms(vectors: np.ndarray) -> tuple[float, float, float]:
    if len(vectors) == 0:
        return 0.0, 0.0, 0.0
    norms = np.linalg.norm(vectors, axis=1)
    return float(norms.min()), float(norms.mean()), float(norms.max())


def _shard_reports(tallies: item_stream.ShardTallies, seconds: float, skipped: bool) -> dict[str, ShardReport]:
    """Each shard's rows written, skipped videos, norms and share of the write's time (the shards of
    one write are read, embedded and copied together: by rows written, by rows read when none were)."""
    items = tallies.tallies
    weights = {shard: t.written for shard, t in items.items()}
    if not sum(weights.values()):
        weights = {shard: t.read for shard, t in items.items()}
    total = sum(weights.values())
    return {
        shard: ShardReport(
            written=t.written,
            seconds=seconds * (weights[shard] / total if total else 1 / len(items)),
            skipped={"already embedded": t.skipped} if skipped else {},
            norm_min=t.norm_min if t.written else 0.0,
            norm_mean=t.norm_sum / t.written if t.written else 0.0,
            norm_max=t.norm_max,
        )
        for shard, t in items.items()
    }


def _clean_likes(engine: sqlalchemy.Engine, known_videos: set[str], as_of: datetime,
                 since: datetime | None = None) -> pd.DataFrame:
    return clean_likes(read_likes(engine, since), known_videos, as_of)


class UnsoundVectors(ValueError):
    """The towers produced NaN or infinite vectors: the version must not serve."""


def _refuse_unsound(vectors: np.ndarray, what: str, version: str) -> None:
    bad = int((~np.isfinite(vectors).all(axis=1)).sum()) if len(vectors) else 0
    if bad:
        raise UnsoundVectors(f"model version {version} produced {bad} non-finite {what} vectors; nothing was "
                             "written. Retrain (check the training data for extreme values)")


def publish_item_vectors(
    url: str, model: ServingModel, shards: Sequence[str], as_of: datetime, only_missing: bool = False,
    workers: int | None = None, chunk_rows: int = CATALOGUE_BATCH_ROWS,
) -> EmbeddingReport:
    """Write the version's vectors of the catalogue videos in ``shards``, in one transaction: all of
    them (replacing the shards' rows), or only those without a vector yet (new videos).

    The catalogue is streamed in chunks (:mod:`twotower_pipeline.item_stream`): reading, feature
    preparation (in ``workers`` processes, by default one per core), ONNX Runtime and the COPY
    overlap, and memory holds a few chunks of ``chunk_rows`` videos. ``phase_seconds`` are each stage's busy time (features:
    summed over the workers), so they add up to more than the step; ``seconds`` is the step."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    engine = db.create_engine(url)
    try:
        # Popularity is a share of every video's likes, so the likes of all shards are read.
        likes = _clean_likes(engine, read_video_ids(engine), as_of,
                             as_of - timedelta(days=max(POPULARITY_HORIZON_DAYS, POPULARITY_WINDOW_DAYS)))
    finally:
        engine.dispose()
    liked = pd.Series(likes["video_id"].unique())
    done: set[str] | None = None
    if only_missing:
        with db.connect(url) as conn:
            done = vector_store.embedded_video_ids(conn, model.version, shards)
    preparation = item_stream.ChunkPreparation(
        model.spec.to_json(), pd.Timestamp(as_of), popularity_inputs(likes, as_of),
        pd.Series(video_popularity(liked, likes, as_of, model.spec.popularity_half_life_days), index=liked.to_numpy()),
        None if done is None else frozenset(done))
    phases["likes"] = time.perf_counter() - started
    tallies = item_stream.ShardTallies(shards)
    features = item_stream.FeaturePool(preparation, item_stream.feature_workers() if workers is None else workers)

    def embed(prepared: Future) -> tuple:
        chunk = prepared.result()
        phases["features"] = phases.get("features", 0.0) + chunk.seconds
        began = time.perf_counter()
        vectors = model.embed_items(chunk.inputs) if len(chunk.ids) else np.zeros((0, 64), np.float32)
        phases["inference"] = phases.get("inference", 0.0) + time.perf_counter() - began
        _refuse_unsound(vectors, "item", model.version)
        tallies.count(chunk, vectors)
        return chunk.ids, vectors, chunk.popularity

    def chunks() -> Iterator[tuple]:
        """Each chunk's (ids, vectors, popularity), the next ones' features under way meanwhile."""
        pending: deque[Future] = deque()
        for table in item_stream.read_ahead(catalogue_tables(url, list(shards), chunk_rows), phases):
            pending.append(features.submit(table))
            while len(pending) > features.workers:
                yield embed(pending.popleft())
        while pending:
            yield embed(pending.popleft())

    try:
        if only_missing:  # a top-up (new videos: a few) is written in one piece, replacing only its rows
            parts = [part for part in chunks() if len(part[0])]
            ids = np.concatenate([part[0] for part in parts]) if parts else np.array([], dtype=object)
            vectors = np.concatenate([part[1] for part in parts]) if parts else np.zeros((0, 64), np.float32)
            popularity = np.concatenate([part[2] for part in parts]) if parts else np.zeros(0, np.float32)
            with db.connect(url) as conn:
                began = time.perf_counter()
                written = vector_store.write_item_vectors(conn, model.version, shards, ids, vectors, popularity,
                                                          replace_shards=False)
                phases["write"] = time.perf_counter() - began
        else:
            writer = item_stream.BackgroundWriter(
                lambda stream: _copy_in_transaction(url, model.version, shards, stream), phases)
            try:
                for chunk in chunks():
                    writer.put(chunk)
                written = writer.finish()
            except BaseException:
                writer.abort()
                raise
    finally:
        features.close()
    if written:
        with db.connect(url, autocommit=True) as conn:
            began = time.perf_counter()
            if vector_store.repair_item_index(conn, model.version):
                phases["index repair"] = time.perf_counter() - began
    seconds = time.perf_counter() - started
    items = tallies.tallies.values()
    count = sum(t.written for t in items)
    return EmbeddingReport(
        written=written,
        seconds=seconds,
        skipped={"already embedded": sum(t.skipped for t in items)} if only_missing else {},
        phase_seconds={k: round(v, 3) for k, v in phases.items()},
        norm_min=min((t.norm_min for t in items if t.written), default=0.0),
        norm_mean=sum(t.norm_sum for t in items) / count if count else 0.0,
        norm_max=max((t.norm_max for t in items), default=0.0),
        per_shard={shard: tallies.tallies[shard].written for shard in shards},
        shards=_shard_reports(tallies, seconds, only_missing),
    )


def _copy_in_transaction(url: str, version: str, shards: Sequence[str], chunks: Iterator[tuple]) -> int:
    with db.connect(url) as conn:  # commits when every chunk is written; rolls back on an error
        return vector_store.copy_item_vectors(conn, version, shards, chunks)


def read_snapshot(url: str, as_of: datetime) -> Snapshot:
    """What the database holds now: the clean catalogue, every clean like (of any age) and the profiles."""
    engine = db.create_engine(url)
    try:
        catalogue = clean_catalogue(read_catalogue(engine))
        likes = _clean_likes(engine, set(catalogue["id"]), as_of)
        profiles = read_profiles(engine)
    finally:
        engine.dispose()
    return Snapshot.of(catalogue, likes, profiles, as_of)


def publish_user_vectors(
    url: str, model: ServingModel, as_of: datetime, only_users: set[str] | None = None
) -> EmbeddingReport:
    """Write the version's vector of every user with a valid like, of any age (replacing all of
    them, and the version's cold-start lists), or only of ``only_users`` (a top-up)."""
    started = time.perf_counter()
    snapshot = read_snapshot(url, as_of)
    histories = user_histories(model.spec, snapshot, only_users=only_users)
    vectors = (model.embed_users(histories.inputs) if len(histories.user_ids)
               else np.zeros((0, 64), dtype=np.float32))
    _refuse_unsound(vectors, "user", model.version)
    lists, served_by = None, {}
    if only_users is None:
        popular = popular_videos(snapshot, model.spec.cold_start)
        lists = popular_lists(snapshot, popular)
        served_by = served_ways(snapshot, popular, set(histories.user_ids))
    with db.connect(url) as conn:
        written = vector_store.write_user_vectors(conn, model.version, list(histories.user_ids), vectors,
                                                  [t.to_pydatetime() for t in histories.likes_until],
                                                  replace_all=only_users is None)
        if lists is not None:
            vector_store.write_popular_videos(conn, model.version, lists)
    low, mean, high = _norms(vectors)
    return EmbeddingReport(written=written, seconds=time.perf_counter() - started, norm_min=low, norm_mean=mean,
                           norm_max=high, segments=0 if lists is None else len(lists), served_by=served_by)


def served_ways(snapshot: Snapshot, popular: PopularVideos, with_vector: set[str]) -> dict[str, int]:
    """How the users the app knows (a like or a profile) are served: by their vector, by their
    segment's popular videos (a profile, no likes), or by overall popularity."""
    profiles = snapshot.profiles.drop_duplicates("user_id")
    without_likes = profiles[~profiles["user_id"].isin(with_vector)]
    by_segment = sum(popular.segment_of(a, r) is not None
                     for a, r in zip(without_likes["age_range"], without_likes["region"]))
    return {SERVED_BY_VECTOR: len(with_vector), SERVED_BY_SEGMENT: int(by_segment),
            SERVED_BY_POPULARITY: int(len(without_likes) - by_segment)}


def popular_lists(snapshot: Snapshot, popular: PopularVideos) -> list[tuple[str, str, list[str], list[float]]]:
    """The cold-start lists of each demographic segment, as vector_store.write_popular_videos takes them."""
    ids = snapshot.catalogue["id"].to_numpy()
    return [(age_range, region, list(ids[rows]), [float(x) for x in popular.segment_scores[(age_range, region)]])
            for (age_range, region), rows in popular.segments.items()]


def load_version(record: vector_store.VersionRecord, cache: Path | None = None) -> ServingModel:
    return ServingModel.load(record.version, record.user_tower_path, record.item_tower_path, record.feature_spec_path,
                             cache)


def complete_version(url: str, model: ServingModel, now: datetime) -> vector_store.Completeness:
    """Embed only what arrived since the version's vectors were written (new videos, users who
    liked since), then report how complete the version is."""
    with db.connect(url) as conn:
        report = vector_store.check_completeness(conn, model.version)
        missing_users = vector_store.users_without_vectors(conn, model.version) if report.missing_users else set()
    if report.missing_videos_by_shard:
        publish_item_vectors(url, model, sorted(report.missing_videos_by_shard), now, only_missing=True)
    if missing_users:
        publish_user_vectors(url, model, datetime.now(UTC), only_users=missing_users)
    if not (report.missing_videos_by_shard or missing_users):
        return report
    with db.connect(url) as conn:
        return vector_store.check_completeness(conn, model.version)


def activate(
    url: str,
    model: ServingModel,
    now: datetime,
    keep_versions: int,
    expected_active: object = vector_store.ANY_ACTIVE,
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 128,
    attempts: int = 5,
) -> vector_store.Activation:
    """Index and complete ``model``'s version, then switch to it (with retention) in one transaction.

    On a busy app a video or a user may arrive between the top-up and the switch: the top-up and
    the switch are tried again, a few times. Raises ActivationRefused; then nothing was switched.
    """
    with db.connect(url, autocommit=True) as conn:
        if vector_store.active_version(conn) == model.version:
            return vector_store.Activation(model.version, None, [], already_active=True)
        if not vector_store.has_vectors(conn, model.version):
            raise vector_store.ActivationRefused(
                f"model version {model.version} has no stored vectors (never embedded, or dropped by retention)")
        vector_store.build_item_index(conn, model.version, hnsw_m, hnsw_ef_construction)
    for attempt in range(attempts):
        complete_version(url, model, datetime.now(UTC))
        try:
            with db.connect(url) as conn:
                return vector_store.activate_version(conn, model.version, expected_active, keep_versions)
        except vector_store.IncompleteVersion:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
