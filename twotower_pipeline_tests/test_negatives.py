"""Negative sampling for the margin loss: the 60/30/10 mix, never the user's own likes."""

import numpy as np
import pytest

from twotower_pipeline.model.negatives import NegativeMix, NegativeSampler


def _sampler(mix: NegativeMix = NegativeMix(), seed: int = 0) -> tuple[NegativeSampler, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    liked = [rng.choice(1_000, size=30, replace=False) for _ in range(50)]
    popularity = np.zeros(1_000)
    popularity[:20] = np.arange(20, 0, -1) * 100  # 20 very popular videos
    return NegativeSampler(liked, popularity, mix, hard_pool_size=40, seed=seed), liked


def test_the_mix_is_60_random_30_hard_10_popular():
    sampler, _ = _sampler()
    sources = sampler.sources(200_000)
    shares = np.bincount(sources, minlength=3) / len(sources)
    np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.005)


def test_negatives_are_never_the_users_own_likes():
    sampler, liked = _sampler()
    users = np.repeat(np.arange(50), 40)
    negatives = sampler.sample(users, per_example=4)
    assert negatives.shape == (2_000, 4)
    for user, row in zip(users, negatives):
        assert not set(row) & set(liked[user])


def test_hard_negatives_come_from_the_highest_scored_unliked_videos():
    sampler, liked = _sampler(NegativeMix(random=0.0, hard=1.0, popular=0.0))
    rng = np.random.default_rng(1)
    users, items = rng.normal(size=(50, 8)), rng.normal(size=(1_000, 8))
    sampler.refresh_hard_pools(users, items)
    negatives = sampler.sample(np.arange(50), per_example=10)
    for user in range(50):
        scores = users[user] @ items.T
        scores[liked[user]] = -np.inf
        top = set(np.argsort(-scores)[:40])
        assert set(negatives[user]) <= top


def test_popular_negatives_follow_popularity():
    sampler, _ = _sampler(NegativeMix(random=0.0, hard=0.0, popular=1.0))
    negatives = sampler.sample(np.zeros(5_000, dtype=int), per_example=1).ravel()
    assert np.isin(negatives, np.arange(20)).mean() > 0.95  # liked ones were redrawn uniformly


def test_a_mix_that_does_not_sum_to_one_is_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        NegativeMix(0.6, 0.3, 0.3)
