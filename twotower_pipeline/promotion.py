"""The champion/challenger gate: a worse model never goes live.

A candidate that passed every blocking check becomes active only if its primary metric on its
own holdout is at least the current champion's, re-scored on that same holdout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    metric: str
    candidate_score: float
    champion_version: str | None
    champion_score: float | None


def decide_promotion(
    candidate_version: str,
    candidate_metrics: dict[str, float],
    champion_version: str | None,
    champion_metrics: dict[str, float],
    active_version_now: str | None,
    metric: str = "recall_at_50",
    min_improvement: float = 0.0,
    comparison: str = "on the same holdout",
) -> PromotionDecision:
    """``comparison`` says on which held-out likes both were scored; it goes into the reason."""
    candidate = float(candidate_metrics.get(metric, float("nan")))
    champion = champion_metrics.get(metric) if champion_metrics else None

    def decision(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, reason, metric, candidate, champion_version,
                                 float(champion) if champion is not None else None)

    if not math.isfinite(candidate):
        return decision(False, f"{candidate_version} has no finite {metric}")
    if active_version_now != champion_version:
        return decision(False, f"the active version changed from {champion_version or 'none'} to "
                               f"{active_version_now or 'none'} while {candidate_version} trained; "
                               "retrain to compare against the new champion")
    if champion_version is None:
        return decision(True, f"{candidate_version} is the first model ({metric} {candidate:.4f})")
    if champion is None or not math.isfinite(float(champion)):
        return decision(False, f"champion {champion_version} has no {metric} to compare with")
    if candidate >= float(champion) + min_improvement:
        return decision(True, f"{candidate_version} {metric} {candidate:.4f} >= champion {champion_version} "
                              f"{float(champion):.4f} ({comparison})")
    return decision(False, f"{candidate_version} {metric} {candidate:.4f} < champion {champion_version} "
                           f"{float(champion):.4f} (+{min_improvement}; {comparison}); the champion stays")
