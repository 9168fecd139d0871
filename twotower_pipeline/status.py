"""What the ops team asks first: which model serves, how good and how old it is, how the last
retrain went, which item-embedding partitions are missing videos, and how many user vectors are
older than their user's latest like."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
import psycopg

from twotower_pipeline import vector_store
from twotower_pipeline.settings import ACTIVE_MODEL_MAX_AGE_DAYS


@dataclass
class PipelineStatus:
    active_version: str | None
    activated_at: datetime | None
    metrics: dict[str, float]
    latest_candidate: tuple[str, str, str | None] | None  # version, status, reason
    last_retrain: tuple[str, str, datetime | None, float | None] | None  # run id, status, start, seconds
    missing_videos_by_shard: dict[str, int] = field(default_factory=dict)
    stale_users: int = 0
    users_with_vectors: int = 0

    @property
    def age_days(self) -> float | None:
        return (datetime.now(UTC) - self.activated_at).total_seconds() / 86_400 if self.activated_at else None

    @property
    def fresh(self) -> bool:
        return self.age_days is not None and self.age_days <= ACTIVE_MODEL_MAX_AGE_DAYS

    def lines(self) -> list[str]:
        out = []
        if self.active_version is None:
            out.append("active model: none (run `twotower retrain`)")
        else:
            freshness = "fresh" if self.fresh else f"STALE (older than {ACTIVE_MODEL_MAX_AGE_DAYS} days)"
            out.append(f"active model: {self.active_version}, activated {self.activated_at:%Y-%m-%d %H:%M %Z} "
                       f"({self.age_days:.1f} days ago, {freshness})")
            shown = {k: self.metrics[k] for k in ("recall_at_50", "ndcg_at_10", "precision_at_10", "auc",
                                                  "coverage_at_50") if k in self.metrics}
            out.append("  metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        if self.latest_candidate and self.latest_candidate[0] != self.active_version:
            version, status, reason = self.latest_candidate
            out.append(f"latest candidate: {version} ({status}{': ' + reason if reason else ''})")
        if self.last_retrain:
            run_id, status, started, seconds = self.last_retrain
            when = f"{started:%Y-%m-%d %H:%M %Z}" if started else "not started"
            took = f", {seconds:.0f} s" if seconds else ""
            out.append(f"last weekly retrain: {status} (run {run_id[:8]}, {when}{took})")
        else:
            out.append("last weekly retrain: none recorded in this Dagster instance")
        if self.active_version is not None:
            if self.missing_videos_by_shard:
                shards = ", ".join(f"{s}: {n}" for s, n in sorted(self.missing_videos_by_shard.items()))
                out.append(f"item partitions missing videos: {shards} (new_videos_sensor embeds them)")
            else:
                out.append("item partitions: every video has a vector of the active version")
            out.append(f"user vectors: {self.users_with_vectors}, {self.stale_users} older than the user's latest "
                       "like (the Edge Function recomputes those on request)")
        return out


def pipeline_status(conn: psycopg.Connection, instance: dg.DagsterInstance | None) -> PipelineStatus:
    active = conn.execute(
        "select version, activated_at, metrics from public.embedding_model_versions "
        "where is_active and model_type = 'item_tower'"
    ).fetchone()
    latest = conn.execute(
        "select version, status, status_reason from public.embedding_model_versions "
        "where model_type = 'item_tower' order by created_at desc limit 1"
    ).fetchone()
    status = PipelineStatus(
        active_version=active[0] if active else None,
        activated_at=active[1] if active else None,
        metrics=dict(active[2] or {}) if active else {},
        latest_candidate=tuple(latest) if latest else None,
        last_retrain=_last_retrain(instance),
    )
    if status.active_version is not None and vector_store.has_vectors(conn, status.active_version):
        status.missing_videos_by_shard = vector_store.missing_videos_by_shard(conn, status.active_version)
        users = conn.execute("select public.two_tower_partition_name('two_tower_user_embeddings', %s)",
                             (status.active_version,)).fetchone()[0]
        status.users_with_vectors, status.stale_users = conn.execute(
            psycopg.sql.SQL(
                "select count(*), count(*) filter (where exists (select 1 from public.likes l "
                "where l.user_id = u.user_id and l.created_at > u.likes_until and l.created_at <= now())) "
                "from public.{} u").format(psycopg.sql.Identifier(users))
        ).fetchone()
    return status


def _last_retrain(instance: dg.DagsterInstance | None) -> tuple[str, str, datetime | None, float | None] | None:
    if instance is None:
        return None
    runs = instance.get_run_records(dg.RunsFilter(job_name="weekly_retrain"), limit=1)
    if not runs:
        return None
    record = runs[0]
    started = datetime.fromtimestamp(record.start_time, UTC) if record.start_time else None
    seconds = (record.end_time - record.start_time) if record.start_time and record.end_time else None
    return record.dagster_run.run_id, record.dagster_run.status.value.lower(), started, seconds
