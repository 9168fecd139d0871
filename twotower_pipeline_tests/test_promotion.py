"""The promotion gate's statistics and rule, on per-user scores whose difference is known."""

import numpy as np
import pytest

from twotower_pipeline.promotion import (
    BETTER,
    NOT_DIFFERENT,
    WORSE,
    GateRule,
    compare_paired,
    decide_promotion,
)

RULE = GateRule(relative_margin=0.05, min_held_out_likes=500, bootstrap_samples=2_000)
WHERE = "made after the champion's training data ended"


def _users(n: int = 800, seed: int = 0) -> np.ndarray:
    """Per-user Recall@50 as real ones look: many zeros and ones, everything in between."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.beta(0.6, 1.4, n) + rng.choice([0.0, 0.0, 1.0], n) * 0.3, 0, 1)


def test_a_candidate_better_for_every_user_is_better_with_a_tight_interval():
    champion = _users()
    comparison = compare_paired(champion + 0.05, champion, 2_000, WHERE, RULE)
    assert comparison.verdict == BETTER
    assert comparison.low == pytest.approx(0.05) and comparison.high == pytest.approx(0.05)
    assert comparison.users == 800 and comparison.held_out_likes == 2_000


def test_the_same_model_twice_is_not_different():
    champion = _users()
    comparison = compare_paired(champion, champion.copy(), 2_000, WHERE, RULE)
    assert comparison.verdict == NOT_DIFFERENT and comparison.low == comparison.high == 0.0


def test_pairing_finds_a_small_steady_gain_that_two_point_estimates_would_not():
    champion = _users(seed=1)
    rng = np.random.default_rng(2)
    candidate = np.clip(champion + rng.normal(0.01, 0.02, len(champion)), 0, 1)
    comparison = compare_paired(candidate, champion, 2_000, WHERE, RULE)
    assert comparison.verdict == BETTER
    # Unpaired, the same gain is inside the noise of either mean.
    unpaired_noise = 1.96 * np.hypot(champion.std(), candidate.std()) / np.sqrt(len(champion))
    assert comparison.difference < unpaired_noise


def test_noise_around_no_difference_is_not_different_and_the_interval_covers_zero():
    champion = _users(seed=3)
    rng = np.random.default_rng(4)
    candidate = np.clip(champion + rng.normal(0.0, 0.1, len(champion)), 0, 1)
    comparison = compare_paired(candidate, champion, 2_000, WHERE, RULE)
    assert comparison.verdict == NOT_DIFFERENT and comparison.low < 0 < comparison.high


@pytest.mark.parametrize(("shift", "promote", "verdict"), [
    (+0.02, True, BETTER),       # better: promoted
    (0.0, True, NOT_DIFFERENT),  # not different: a fresh model is preferred
    (-0.005, True, WORSE),       # measurably worse, but within the margin (5% of the champion's ~0.4)
    (-0.10, False, WORSE),       # worse by more than the margin: refused
])
def test_the_rule_promotes_a_non_inferior_candidate_and_refuses_a_worse_one(shift, promote, verdict):
    champion = _users(seed=5)
    comparison = compare_paired(champion + shift, champion, 2_000, WHERE, RULE)
    decision = decide_promotion("v2", "v1", "v1", comparison, RULE)
    assert decision.promote is promote and comparison.verdict == verdict
    assert "v1" in decision.reason and f"{comparison.difference:+.4f}" in decision.reason
    assert f"[{comparison.low:+.4f}, {comparison.high:+.4f}]" in decision.reason
    assert not decision.champion_unavailable


def test_too_few_held_out_likes_keep_the_champion_and_fail_the_run():
    champion = _users(100)
    comparison = compare_paired(champion + 0.2, champion, 120, WHERE, RULE)
    decision = decide_promotion("v2", "v1", "v1", comparison, RULE)
    assert not decision.promote and decision.champion_unavailable
    assert "only 120 held-out likes" in decision.reason and "at least 500" in decision.reason


def test_a_champion_that_cannot_be_re_scored_stays_and_the_run_fails():
    decision = decide_promotion("v2", "v1", "v1", None, RULE, not_compared_because="its files are gone")
    assert not decision.promote and decision.champion_unavailable
    assert decision.reason == "the champion v1 stays: its files are gone"


def test_the_first_model_is_promoted_and_a_champion_changed_meanwhile_is_refused():
    assert decide_promotion("v1", None, None, None, RULE).promote
    stale = decide_promotion("v3", "v1", "v2", None, RULE)
    assert not stale.promote and "changed from v1 to v2" in stale.reason


def test_scores_for_different_users_are_refused():
    with pytest.raises(ValueError, match="same users"):
        compare_paired(np.ones(3), np.ones(4), 10, WHERE, RULE)
