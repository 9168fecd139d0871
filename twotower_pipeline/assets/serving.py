"""Serving: item vectors (partitioned by catalogue shard), user vectors, and the active version."""


from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from twotower_pipeline import vector_store
from twotower_pipeline.assets import OWNERS, TRANSIENT_RETRIES, retries_only_transient
from twotower_pipeline.assets.artifacts import OnnxTowers
from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.preparation import prepare_training
from twotower_pipeline.promotion import GateRule, PromotionDecision, gate
from twotower_pipeline.publishing import (
    EmbeddingReport,
    ServingModel,
    ShardReport,
    UnsoundVectors,
    activate,
    load_version,
    publish_item_vectors,
    publish_user_vectors,
)
from twotower_pipeline.reporting import shard_table
from twotower_pipeline.resources import AppDatabase, MlflowTracking, ModelStore
from twotower_pipeline.settings import ACTIVE_MODEL_MAX_AGE_DAYS
from twotower_pipeline.validation import TrainingData

GROUP = "serving"

# A video's shard is the first hex digit of its uuid: 16 even, stable shards.
catalogue_shards = dg.StaticPartitionsDefinition(list(vector_store.SHARDS))


_GATE = GateRule()


class ServingConfig(dg.Config):
    """The promotion gate's rule (promotion.GateRule), and the index of the version that goes live."""

    primary_metric: Literal["recall_at_50", "ndcg_at_10", "precision_at_10", "auc"] = _GATE.metric
    # The candidate goes live unless it may be worse than the champion by more than this share of
    # the champion's score (the lower end of the 95% interval of the paired difference).
    relative_margin: float = Field(default=_GATE.relative_margin, ge=-1.0, le=1.0)
    min_held_out_likes: int = Field(default=_GATE.min_held_out_likes, ge=1)
    bootstrap_samples: int = Field(default=_GATE.bootstrap_samples, ge=100)
    hnsw_m: int = 16
    hnsw_ef_construction: int = 128  # recall@10 0.94 at 64, 0.999 at 128 (bench/serving_benchmark.py)
    keep_versions: int = vector_store.KEEP_VERSIONS


@dataclass
class UserEmbeddings:
    version: str
    as_of: datetime
    users: int


def _serving_model(onnx: OnnxTowers, model_store: ModelStore) -> ServingModel:
    return ServingModel.load(onnx.version, onnx.user_tower_path, onnx.item_tower_path, onnx.feature_spec_path,
                             Path(model_store.cache_dir))


def _report_metadata(report: EmbeddingReport) -> dict[str, dg.MetadataValue]:
    return {
        "rows_written": dg.MetadataValue.int(report.written),
        "videos_skipped": dg.MetadataValue.json(report.skipped),
        "seconds": dg.MetadataValue.float(report.seconds),
        "norm_min": dg.MetadataValue.float(report.norm_min),
        "norm_mean": dg.MetadataValue.float(report.norm_mean),
        "norm_max": dg.MetadataValue.float(report.norm_max),
    }


class ItemEmbeddingConfig(dg.Config):
    # "replace": (re)write every video of the partitions (a new model, a fixed feature, a failed shard).
    # "missing": embed only videos without a vector yet (new videos between retrains).
    mode: Literal["replace", "missing"] = "replace"
    # "newest": the newest exported version (what the weekly retrain activates next).
    # "live": the active version and any candidate in flight.
    versions: Literal["newest", "live"] = "newest"


def _shard_numbers(part: ShardReport) -> dict:
    return {"rows_written": part.written, "seconds": round(part.seconds, 3), "videos_skipped": part.skipped,
            "norm_min": part.norm_min, "norm_mean": part.norm_mean, "norm_max": part.norm_max}


def _partition_metadata(reports: dict[str, EmbeddingReport], shard: str) -> dict[str, dg.MetadataValue]:
    """One partition's own numbers, from what was written of its shard: rows, seconds (its share of
    the run's time), videos skipped and why, and vector norms, over every version written (and for
    each version under ``by_version``)."""
    parts = {version: report.shards[shard] for version, report in reports.items()}
    rows = sum(part.written for part in parts.values())
    normed = [part for part in parts.values() if part.written]
    return {
        "rows_written": dg.MetadataValue.int(rows),
        "seconds": dg.MetadataValue.float(sum(part.seconds for part in parts.values())),
        "videos_skipped": dg.MetadataValue.json({version: part.skipped for version, part in parts.items()}),
        "norm_min": dg.MetadataValue.float(min((part.norm_min for part in normed), default=0.0)),
        "norm_mean": dg.MetadataValue.float(sum(part.norm_mean * part.written for part in normed) / rows
                                            if rows else 0.0),
        "norm_max": dg.MetadataValue.float(max((part.norm_max for part in normed), default=0.0)),
        "by_version": dg.MetadataValue.json({version: _shard_numbers(part) for version, part in parts.items()}),
    }


def _run_metadata(reports: dict[str, EmbeddingReport], shards: list[str], mode: str) -> dict[str, dg.MetadataValue]:
    """What the whole run did, on each of its partitions under ``run_`` names (a range run writes its
    shards together: one read, one batch through the tower, one transaction)."""
    covered = shards[0] if len(shards) == 1 else f"{shards[0]}...{shards[-1]} ({len(shards)} shards in one run)"
    return {
        "versions": dg.MetadataValue.json(list(reports)),
        "mode": dg.MetadataValue.text(mode),
        "run_partitions": dg.MetadataValue.text(covered),
        "run_rows_written": dg.MetadataValue.int(sum(r.written for r in reports.values())),
        "run_seconds": dg.MetadataValue.float(sum(r.seconds for r in reports.values())),
        "run_phase_seconds": dg.MetadataValue.json({v: r.phase_seconds for v, r in reports.items()}),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"onnx", "pgvector"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    partitions_def=catalogue_shards,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="64-d item vectors, one partition per catalogue shard (first hex digit of the video id). "
    "By default the newest exported version's vectors of every video in the partitions are replaced; "
    "with mode 'missing' and versions 'live' only videos without a vector yet are embedded, for the "
    "active version and any candidate in flight (what new_videos_sensor launches). Each partition's "
    "materialisation carries its own shard's numbers (rows_written, seconds, videos_skipped, norms; per "
    "version under by_version); a run of several partitions writes them together, so a partition's seconds "
    "are its share of the run's time, and the run's totals are under run_* on each of its partitions.",
)
@retries_only_transient
def item_embeddings(
    context: dg.AssetExecutionContext, config: ItemEmbeddingConfig, onnx_towers: OnnxTowers, app_db: AppDatabase,
    model_store: ModelStore,
) -> dg.MaterializeResult:
    shards = list(context.partition_keys)
    url = app_db.resolved_url()
    with app_db.connect() as conn:
        versions = [onnx_towers.version] if config.versions == "newest" else vector_store.live_versions(conn)
        records = [vector_store.version_record(conn, version) for version in versions]
    reports: dict[str, EmbeddingReport] = {}
    for record in records:
        if record is None:
            raise dg.Failure(f"model version {onnx_towers.version} is not registered; re-run onnx_towers",
                             allow_retries=False)
        try:
            report = publish_item_vectors(url, load_version(record, Path(model_store.cache_dir)), shards, datetime.now(UTC),
                                          only_missing=config.mode == "missing")
        except (UnsoundVectors, ValueError) as error:
            raise dg.Failure(str(error), allow_retries=False) from error
        reports[record.version] = report
        context.log.info(f"version {record.version}: wrote {report.written} item vectors for shards "
                         f"{','.join(shards)} ({report.seconds:.1f} s)")
    context.log.info(f"item vectors by shard:\n{shard_table(reports, shards)}")
    # One materialisation per partition (Dagster's own, from the result below), each with its shard's numbers.
    for shard in shards:
        context.add_asset_metadata(_partition_metadata(reports, shard), partition_key=shard)
    return dg.MaterializeResult(metadata=_run_metadata(reports, shards, config.mode))


@dg.asset(
    group_name=GROUP,
    kinds={"onnx", "pgvector"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    description="64-d vectors of every user with a like (of any age: each from the user's newest likes), "
    "and the popular videos of each demographic segment for users without likes, from the newest "
    "exported version.",
)
@retries_only_transient
def user_embeddings(
    context: dg.AssetExecutionContext, onnx_towers: OnnxTowers, app_db: AppDatabase, model_store: ModelStore
) -> dg.Output[UserEmbeddings]:
    as_of = datetime.now(UTC)
    model = _serving_model(onnx_towers, model_store)
    try:
        report = publish_user_vectors(app_db.resolved_url(), model, as_of)
    except (UnsoundVectors, ValueError) as error:
        raise dg.Failure(str(error), allow_retries=False) from error
    metadata = _report_metadata(report)
    metadata["version"] = dg.MetadataValue.text(model.version)
    metadata["segment_lists"] = dg.MetadataValue.int(report.segments)
    metadata["users_served_by"] = dg.MetadataValue.json(report.served_by)
    known = sum(report.served_by.values())
    for way, users in report.served_by.items():
        metadata[f"share_served_by_{way.replace(' ', '_')}"] = dg.MetadataValue.float(users / known if known else 0.0)
    return dg.Output(UserEmbeddings(model.version, as_of, report.written), metadata=metadata)


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRIES,
    deps=[item_embeddings],
    # Materialised only when a version is activated, so freshness tracks the live model's age.
    output_required=False,
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(days=ACTIVE_MODEL_MAX_AGE_DAYS)),
    description="The model version the app serves. The promotion gate serves the candidate and the "
    "champion (each with its own ONNX towers) on the same held-out likes and compares them user by user "
    "(a paired bootstrap interval); a candidate that is not worse by more than the margin gets its HNSW "
    "index, any video or user that arrived meanwhile is embedded, completeness is checked, and both "
    "towers switch in one transaction. The newest versions' vectors are kept for rollback.",
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate", asset="active_model_version",
            description="Served on the same held-out likes, the candidate is not worse than the champion by "
            "more than the margin (95% interval of the paired difference); the verdict says better, not "
            "different or worse.",
        ),
        dg.AssetCheckSpec(
            "vectors_complete", asset="active_model_version",
            description="Every catalogue video and every user with a like has a unit-length vector of the "
            "version that serves after this step (a candidate missing any is not switched to).",
        ),
    ],
)
@retries_only_transient
def active_model_version(
    context: dg.AssetExecutionContext,
    config: ServingConfig,
    onnx_towers: OnnxTowers,
    user_embeddings: UserEmbeddings,
    training_data: TrainingData,
    app_db: AppDatabase,
    mlflow_tracking: MlflowTracking,
    model_store: ModelStore,
):
    version = onnx_towers.version
    if user_embeddings.version != version:
        raise dg.Failure(
            f"user embeddings are of version {user_embeddings.version}, item towers of {version}; "
            "re-run user_embeddings for the newest version", allow_retries=False,
        )
    now = datetime.now(UTC)
    rule = GateRule(config.primary_metric, config.relative_margin, config.min_held_out_likes,
                    bootstrap_samples=config.bootstrap_samples)
    candidate = _serving_model(onnx_towers, model_store)
    with app_db.connect() as conn:
        active_now = vector_store.active_version(conn)
        champion = vector_store.active_record(conn)
    if active_now == version:
        # A retry of this step after the switch had committed: the candidate is already live.
        decision = PromotionDecision(True, f"{version} is already the active version (activated by an earlier "
                                     "attempt of this step)", None)
    else:
        def holdout():
            data = training_data
            return prepare_training(data.catalogue, data.likes, TrainingConfig.from_dict(onnx_towers.training_config),
                                    data.profiles, data.as_of, data.window_days)

        decision = gate(candidate, champion, active_now, holdout,
                        lambda record: load_version(record, Path(model_store.cache_dir)), rule)
    _record_gate(decision, version, rule, app_db, mlflow_tracking, onnx_towers.mlflow_run_id)
    yield _gate_result(decision, rule)
    if not decision.promote:
        context.log.warning(f"candidate {version} rejected: {decision.reason}")
        if active_now is not None:
            yield _completeness_result(_completeness(app_db, active_now))
        else:
            yield dg.AssetCheckResult(check_name="vectors_complete", passed=False,
                                      description="no version serves: the first candidate was rejected")
        if decision.champion_unavailable:  # no fair comparison: the run fails, so the failure alert fires
            raise dg.Failure(decision.reason, allow_retries=False)
        return  # no new materialisation: the active version is unchanged (see the promotion_gate check)

    url = app_db.resolved_url()
    try:
        activation = activate(url, candidate, now, config.keep_versions,
                              expected_active=active_now, hnsw_m=config.hnsw_m,
                              hnsw_ef_construction=config.hnsw_ef_construction)
    except vector_store.IncompleteVersion as incomplete:
        yield _completeness_result(_completeness(app_db, version))
        raise dg.Failure(str(incomplete)) from incomplete  # retried: arrivals may settle
    except vector_store.ActivationRefused as refused:
        with app_db.connect() as conn:
            vector_store.reject_version(conn, version, f"activation refused: {refused}")
        _tag_run(mlflow_tracking, onnx_towers.mlflow_run_id, "refused", str(refused))
        raise dg.Failure(str(refused), allow_retries=False) from refused
    yield _completeness_result(_completeness(app_db, version))
    mlflow_tracking.set_alias(version, "champion")
    _tag_run(mlflow_tracking, onnx_towers.mlflow_run_id, "activated", decision.reason)
    context.log.info(f"active model version: {version} (previous: {activation.previous or 'none'})")
    metadata = {
        "active_version": dg.MetadataValue.text(version),
        "reason": dg.MetadataValue.text(decision.reason),
        "verdict": dg.MetadataValue.text(decision.verdict),
        "previous_version": dg.MetadataValue.text(activation.previous or "none"),
        "dropped_versions": dg.MetadataValue.json(activation.dropped),
    }
    metadata.update({k: dg.MetadataValue.float(float(v)) for k, v in onnx_towers.metrics.items()})
    yield dg.Output(None, metadata=metadata)


def _gate_result(decision: PromotionDecision, rule: GateRule) -> dg.AssetCheckResult:
    metadata: dict[str, dg.MetadataValue] = {
        "verdict": dg.MetadataValue.text(decision.verdict),
        "champion_version": dg.MetadataValue.text(decision.champion_version or "none"),
        "relative_margin": dg.MetadataValue.float(rule.relative_margin),
    }
    c = decision.comparison
    if c is not None:
        metadata.update({
            "metric": dg.MetadataValue.text(c.metric),
            "candidate": dg.MetadataValue.float(c.candidate),
            "champion": dg.MetadataValue.float(c.champion),
            "difference": dg.MetadataValue.float(c.difference),
            "interval_low": dg.MetadataValue.float(c.low),
            "interval_high": dg.MetadataValue.float(c.high),
            "users": dg.MetadataValue.int(c.users),
            "held_out_likes": dg.MetadataValue.int(c.held_out_likes),
            "held_out": dg.MetadataValue.text(c.held_out),
        })
    return dg.AssetCheckResult(check_name="promotion_gate", passed=decision.promote,
                               severity=dg.AssetCheckSeverity.WARN, description=decision.reason, metadata=metadata)


def _record_gate(decision: PromotionDecision, version: str, rule: GateRule, app_db: AppDatabase,
                 mlflow_tracking: MlflowTracking, run_id: str) -> None:
    """The decision, its interval and counts: on the version's row and on the candidate's MLflow run."""
    record = {"promote": decision.promote, "verdict": decision.verdict, "reason": decision.reason,
              "relative_margin": rule.relative_margin,
              **(decision.comparison.as_metadata() if decision.comparison else {})}
    with app_db.connect() as conn:
        vector_store.record_gate(conn, version, record)
        if not decision.promote:
            vector_store.reject_version(conn, version, decision.reason)
    client = mlflow_tracking.client()
    if decision.comparison is not None:
        c = decision.comparison
        for name, value in (("candidate", c.candidate), ("champion", c.champion), ("difference", c.difference),
                            ("interval_low", c.low), ("interval_high", c.high), ("users", c.users),
                            ("held_out_likes", c.held_out_likes)):
            client.log_metric(run_id, f"gate_{name}", float(value))
    client.set_tag(run_id, "twotower.gate_verdict", decision.verdict)
    if not decision.promote:
        _tag_run(mlflow_tracking, run_id, "rejected", decision.reason)


def _tag_run(mlflow_tracking: MlflowTracking, run_id: str, outcome: str, reason: str) -> None:
    client = mlflow_tracking.client()
    client.set_tag(run_id, "twotower.promotion", outcome)
    client.set_tag(run_id, "twotower.promotion_reason", reason[:5000])


def _completeness(app_db: AppDatabase, version: str) -> vector_store.Completeness:
    with app_db.connect() as conn:
        return vector_store.check_completeness(conn, version)


def _completeness_result(report: vector_store.Completeness) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="vectors_complete",
        passed=not report.problems,
        description="; ".join(report.problems) or f"every video and active user has a vector of {report.version}",
        metadata={
            "catalogue_videos": dg.MetadataValue.int(report.catalogue_videos),
            "item_vectors": dg.MetadataValue.int(report.item_vectors),
            "missing_videos_by_shard": dg.MetadataValue.json(report.missing_videos_by_shard),
            "active_users": dg.MetadataValue.int(report.active_users),
            "user_vectors": dg.MetadataValue.int(report.user_vectors),
            "vectors_not_unit_length": dg.MetadataValue.int(report.bad_item_vectors + report.bad_user_vectors),
        },
    )
