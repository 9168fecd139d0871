"""The losses against hand-computed values (numpy), the masking of accidental hits, early stopping
keeping the best epoch, and one step under MirroredStrategy equal to one step without it."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from twotower_pipeline.model.config import TowerConfig, TrainingConfig
from twotower_pipeline.model.features import HISTORY_LENGTH, OOV
from twotower_pipeline.model.losses import (
    accidental_hits,
    in_batch_logits,
    in_batch_softmax,
    liked_by_row_user,
    likes_matrix,
    margin_hinge,
    replica_mean,
    replica_slices,
)
from twotower_pipeline.model.tensorflow_import import keras, tf
from twotower_pipeline.model.towers import build_towers
from twotower_pipeline.model.training import TwoTowerRetrieval, early_stopping
from twotower_pipeline_tests.conftest import tiny_feature_spec

# A 3x3 batch: three examples' user vectors and their positives' vectors (not normalised: the
# loss does not care, and round numbers keep the expected values readable).
USERS = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=np.float32)
ITEMS = np.array([[0.8, 0.1], [0.2, 0.6], [0.3, 0.9]], dtype=np.float32)


def _expected(users, items, temperature, log_q=None, excluded=None):
    """Softmax cross-entropy of each row's own column, in float64 numpy."""
    logits = users.astype(np.float64) @ items.astype(np.float64).T / temperature
    if log_q is not None:
        logits = logits - np.asarray(log_q, dtype=np.float64)[None, :]
    if excluded is not None:
        logits = np.where(excluded, -np.inf, logits)
    logits = logits - logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -np.diag(log_softmax)


def _np(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def test_in_batch_softmax_equals_the_hand_computed_cross_entropy():
    log_q = np.log([0.5, 0.3, 0.2]).astype(np.float32)
    got = _np(in_batch_softmax(USERS, ITEMS, 0.5, log_q))
    np.testing.assert_allclose(got, _expected(USERS, ITEMS, 0.5, log_q), rtol=1e-5)
    # Written out for row 0: logits (0.8, 0.2, 0.3) / 0.5 - log q.
    row = np.array([0.8, 0.2, 0.3]) / 0.5 - np.log([0.5, 0.3, 0.2])
    assert got[0] == pytest.approx(-row[0] + np.log(np.exp(row).sum()), rel=1e-5)
    np.testing.assert_allclose(_np(in_batch_softmax(USERS, ITEMS, 0.5)), _expected(USERS, ITEMS, 0.5), rtol=1e-5)


def test_the_logq_correction_lowers_a_popular_videos_logit():
    # Video 0 is a positive 100 times as often as the others: log q = log 0.98 vs log 0.01.
    q = np.array([0.98, 0.01, 0.01], dtype=np.float32)
    plain = _np(in_batch_logits(USERS, ITEMS, 1.0))
    corrected = _np(in_batch_logits(USERS, ITEMS, 1.0, np.log(q)))
    shift = corrected - plain
    np.testing.assert_allclose(shift, np.tile(-np.log(q), (3, 1)), rtol=1e-5)  # logit - log q_j
    # Against the rare videos, the popular one is lowered by log(q_pop / q_rare).
    np.testing.assert_allclose(shift[:, 0] - shift[:, 1], -np.log(98.0), rtol=1e-5)
    # So a user equally close to every video puts less probability on the popular one.
    flat = np.ones((1, 2), dtype=np.float32)
    probability = keras.ops.softmax(in_batch_logits(flat, ITEMS * 0 + 1, 1.0, np.log(q)), axis=-1)
    assert _np(probability)[0, 0] < 1 / 3 < _np(probability)[0, 1]


def test_the_temperature_scales_the_logits():
    np.testing.assert_allclose(_np(in_batch_logits(USERS, ITEMS, 0.1)), 10 * _np(in_batch_logits(USERS, ITEMS, 1.0)),
                               rtol=1e-5)
    sharp, soft = _np(in_batch_softmax(USERS, ITEMS, 0.05)), _np(in_batch_softmax(USERS, ITEMS, 1.0))
    np.testing.assert_allclose(sharp, _expected(USERS, ITEMS, 0.05), rtol=1e-5, atol=1e-6)  # float32
    np.testing.assert_allclose(soft, _expected(USERS, ITEMS, 1.0), rtol=1e-5)
    # Row 0 ranks its own positive first: a lower temperature makes the loss smaller.
    assert sharp[0] < soft[0]


def test_a_video_repeated_in_the_batch_is_not_a_negative():
    positives = np.array([7, 7, 9])
    excluded = _np(accidental_hits(positives))
    assert excluded.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    got = _np(in_batch_softmax(USERS, ITEMS, 0.5, None, accidental_hits(positives)))
    np.testing.assert_allclose(got, _expected(USERS, ITEMS, 0.5, None, excluded), rtol=1e-5)
    # Row 0's softmax is over its own positive and video 9 only.
    row = np.array([0.8, 0.3]) / 0.5
    assert got[0] == pytest.approx(-row[0] + np.log(np.exp(row).sum()), rel=1e-5)


def test_the_same_users_other_likes_in_the_batch_are_not_negatives():
    # Training likes: user 0 liked videos 7 and 9, user 1 video 8, user 2 videos 9 and 4.
    liked = likes_matrix([np.array([7, 9]), np.array([8]), np.array([9, 4])], n_items=10)
    users, positives = np.array([0, 1, 2]), np.array([7, 8, 9])
    mask = liked_by_row_user(liked, users, positives)
    assert mask.tolist() == [[True, False, True], [False, True, False], [False, False, True]]
    excluded = _np(accidental_hits(positives, mask))
    # Example 0's user liked example 2's positive: not a negative for them. The diagonal stays.
    assert excluded.tolist() == [[False, False, True], [False, False, False], [False, False, False]]
    got = _np(in_batch_softmax(USERS, ITEMS, 0.5, None, excluded))
    np.testing.assert_allclose(got, _expected(USERS, ITEMS, 0.5, None, excluded), rtol=1e-5)
    assert got[0] < _np(in_batch_softmax(USERS, ITEMS, 0.5))[0]  # one negative fewer
    np.testing.assert_allclose(got[1:], _np(in_batch_softmax(USERS, ITEMS, 0.5))[1:], rtol=1e-6)
    # A heavy user with two examples in the batch: each example's positive is the other's like.
    two = liked_by_row_user(liked, np.array([0, 0, 1]), np.array([7, 9, 8]))
    assert _np(accidental_hits(np.array([7, 9, 8]), two)).tolist() == [
        [False, True, False], [True, False, False], [False, False, False]]


def test_the_likes_mask_is_built_per_replica_slice():
    liked = likes_matrix([np.array([1, 2, 3, 4]), np.array([2])], n_items=5)
    users, positives = np.array([0, 1, 0, 1]), np.array([1, 2, 3, 4])
    assert replica_slices(4, 2) == [slice(0, 2), slice(2, 4)]
    assert replica_slices(5, 2) == [slice(0, 3), slice(3, 5)]
    mask = liked_by_row_user(liked, users, positives, replicas=2)
    # Rows 0-1 see positives (1, 2); rows 2-3 see (3, 4): columns are positions within the slice.
    assert mask.tolist() == [[True, True], [False, True], [True, True], [False, False]]
    full = liked_by_row_user(liked, users, positives, replicas=1)
    np.testing.assert_array_equal(full[:2, :2], mask[:2])
    np.testing.assert_array_equal(full[2:, 2:], mask[2:])


def test_the_margin_loss_equals_the_hand_computed_hinge():
    users = USERS[:2]
    positives = ITEMS[:2]
    negatives = np.array([[[0.0, 1.0], [0.9, 0.0]], [[0.5, 0.5], [-1.0, 0.0]]], dtype=np.float32)
    # User 0: s(pos) = 0.8; negatives 0.0 and 0.9 -> max(0, .3 - .8 + 0) = 0, max(0, .3 - .8 + .9) = .4.
    # User 1: s(pos) = 0.4; negatives 0.5 and -0.5 -> .4 and 0.
    np.testing.assert_allclose(_np(margin_hinge(users, positives, negatives, 0.3)), [0.2, 0.2], rtol=1e-5)
    expected = np.maximum(0, 0.3 - (users * positives).sum(-1, keepdims=True) + np.einsum("bd,bkd->bk", users, negatives))
    np.testing.assert_allclose(_np(margin_hinge(users, positives, negatives, 0.3)), expected.mean(-1), rtol=1e-5)


def test_without_a_strategy_the_loss_is_the_plain_mean():
    assert float(_np(replica_mean(np.array([1.0, 2.0, 6.0], dtype=np.float32)))) == pytest.approx(3.0)




def tiny_batch(batch: int, negatives: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of both towers for ``batch`` examples (and ``negatives`` per example)."""
    rng = np.random.default_rng(seed)
    spec = tiny_feature_spec()
    video = rng.integers(2, spec.videos.size, (batch, HISTORY_LENGTH))
    video[:, : HISTORY_LENGTH - 5] = 0
    x = {
        "hist_video_idx": video, "hist_genre_idx": rng.integers(2, spec.genres.size, (batch, HISTORY_LENGTH)),
        "hist_maker_idx": rng.integers(2, spec.makers.size, (batch, HISTORY_LENGTH)),
        "hist_price": rng.normal(size=(batch, HISTORY_LENGTH)).astype(np.float32),
        "hist_age_days": rng.uniform(0, 50, (batch, HISTORY_LENGTH)).astype(np.float32),
        "user_age_range_idx": np.full(batch, OOV), "user_region_idx": np.full(batch, OOV),
    }

    def items(shape):
        return {
            "video_idx": rng.integers(2, spec.videos.size, shape), "genre_idx": rng.integers(2, 5, shape),
            "maker_idx": rng.integers(2, 4, shape), "performer_idx": rng.integers(0, 3, shape + (8,)),
            "tag_idx": rng.integers(0, 4, shape + (16,)), "text_idx": rng.integers(0, 4, shape + (32,)),
            "text_weight": rng.uniform(0, 1, shape + (32,)).astype(np.float32),
            "numeric": rng.normal(size=shape + (4,)).astype(np.float32),
        }

    x.update(items((batch,)))
    x["positive_row"] = rng.permutation(50)[:batch].astype(np.int64)
    x["log_q"] = np.log(rng.uniform(0.01, 0.2, batch)).astype(np.float32)
    if negatives:
        x.update({f"neg_{k}": v for k, v in items((batch, negatives)).items()})
    return x


def test_the_models_loss_is_these_functions_with_the_batchs_masks():
    config = TrainingConfig(temperature=0.2)
    user_tower, item_tower = build_towers(tiny_feature_spec(), TowerConfig(dropout=0.0))
    model = TwoTowerRetrieval(user_tower, item_tower, config)
    x = tiny_batch(4)
    x["positive_row"] = np.array([3, 3, 5, 6])
    x["liked_by_user"] = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    users, items = (_np(v) for v in model(x))
    excluded = np.array([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    expected = _expected(users, items, 0.2, x["log_q"], excluded).mean()
    assert float(_np(model.compute_loss(x, None, model(x)))) == pytest.approx(expected, rel=1e-5)

    margin = TwoTowerRetrieval(user_tower, item_tower, TrainingConfig(loss="margin", negatives_per_example=3))
    x = tiny_batch(4, negatives=3)
    users, positives, negatives = (_np(v) for v in margin(x))
    assert negatives.shape == (4, 3, 64)
    hinge = np.maximum(0, 0.3 - (users * positives).sum(-1, keepdims=True) + np.einsum("bd,bkd->bk", users, negatives))
    assert float(_np(margin.compute_loss(x, None, margin(x)))) == pytest.approx(hinge.mean(), rel=1e-5)


class _ScriptedRecall(keras.callbacks.Callback):
    """Writes a scripted validation recall into the logs, as EpochEvaluation does."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_recall_at_50"] = self.values[epoch]


class _WeightsPerEpoch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([np.array(w) for w in self.model.get_weights()])


@pytest.mark.parametrize("recalls, best", [
    ([0.10, 0.50, 0.20, 0.30, 0.30, 0.30, 0.31, 0.30, 0.30, 0.30, 0.30, 0.30], 1),  # peaks before min_epochs
    ([0.10, 0.20, 0.20, 0.30, 0.30, 0.30, 0.45, 0.30, 0.30, 0.30, 0.30, 0.30], 6),  # peaks after
])
def test_early_stopping_keeps_the_best_epochs_weights(recalls, best):
    config = TrainingConfig()  # min_epochs 5, patience 3: the callbacks training uses
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.normal(size=(32, 2))
    recorder = _WeightsPerEpoch()
    fit = model.fit(x, y, epochs=len(recalls), batch_size=8, verbose=0,
                    callbacks=[_ScriptedRecall(recalls), early_stopping(config), recorder])
    ran = len(fit.history["loss"])
    assert ran < len(recalls)  # it did stop early...
    assert ran >= config.min_epochs  # ...but not before min_epochs
    assert int(np.argmax(fit.history["val_recall_at_50"])) == best  # what stats["best_epoch"] reports
    for final, kept in zip(model.get_weights(), recorder.weights[best]):
        np.testing.assert_array_equal(final, kept)
    assert any(not np.array_equal(a, b) for a, b in zip(recorder.weights[best], recorder.weights[-1]))


MIRRORED_SCRIPT = textwrap.dedent("""
    # Two training steps of each loss, under MirroredStrategy on two logical CPUs or without a
    # strategy; weights before and after and the logged losses go to an .npz file. One strategy per
    # process: TensorFlow's collectives do not take a second strategy (or a plain fit after one)
    # in the same process reliably.
    import sys
    from twotower_pipeline.model.tensorflow_import import keras, tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import numpy as np
    from twotower_pipeline.model.config import TowerConfig, TrainingConfig
    from twotower_pipeline.model.losses import liked_by_row_user, likes_matrix, replica_slices
    from twotower_pipeline.model.towers import build_towers
    from twotower_pipeline.model.training import TwoTowerRetrieval
    from twotower_pipeline_tests.conftest import tiny_feature_spec
    from twotower_pipeline_tests.test_losses import tiny_batch

    mode, out = sys.argv[1], sys.argv[2]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if mode == "mirrored" \\
        else tf.distribute.get_strategy()

    class Batches(keras.utils.PyDataset):  # the kind of dataset training fits on
        def __init__(self, batch):
            super().__init__()
            self.batch = batch
        def __len__(self):
            return 1  # one step: its update is the gradient at the same weights in both runs
        def __getitem__(self, index):
            return self.batch

    def steps(config, batch):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            user_tower, item_tower = build_towers(tiny_feature_spec(), TowerConfig(dropout=0.0))
            model = TwoTowerRetrieval(user_tower, item_tower, config)
            model.compile(optimizer=keras.optimizers.SGD(0.5))  # linear in the gradient, unlike Adam
        before = [np.array(w) for w in model.get_weights()]
        fit = model.fit(Batches(batch), epochs=1, verbose=0, shuffle=False)
        return before, [np.array(w) for w in model.get_weights()], float(fit.history["loss"][0])

    B = 8
    results = {}
    # Margin loss: each example's loss is its own, so 2 x 4 examples is exactly 1 x 8.
    results["margin"] = steps(TrainingConfig(loss="margin", negatives_per_example=3), tiny_batch(B, 3, seed=1))
    # In-batch softmax: each replica's negatives are its own half's. Its equivalent without a strategy
    # is the whole batch with the pairs across the halves excluded as well.
    batch = tiny_batch(B, seed=2)
    batch["positive_row"] = np.array([3, 5, 3, 7, 11, 12, 13, 5])  # a repeat within a half, one across
    liked = likes_matrix([np.array([3, 5, 13]), np.array([7, 12]), np.array([11])], n_items=20)
    users = np.array([0, 1, 0, 1, 2, 1, 0, 2])
    if mode == "mirrored":
        mask = liked_by_row_user(liked, users, batch["positive_row"], replicas=2)  # as ExampleBatches builds it
    else:
        halves = np.zeros((B, B), dtype=bool)
        for part in replica_slices(B, 2):
            halves[part, part] = True
        mask = liked_by_row_user(liked, users, batch["positive_row"]) | ~halves
    batch["liked_by_user"] = mask.astype(np.uint8)
    results["sampled_softmax"] = steps(TrainingConfig(), batch)
    arrays = {"replicas": np.array(strategy.num_replicas_in_sync)}
    for loss, (before, after, logged) in results.items():
        arrays[f"{loss}_loss"] = np.array(logged)
        arrays.update({f"{loss}_before_{i}": w for i, w in enumerate(before)})
        arrays.update({f"{loss}_after_{i}": w for i, w in enumerate(after)})
    np.savez(out, **arrays)
""")


def test_two_steps_under_mirrored_strategy_on_two_replicas_equal_two_steps_without(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    runs = {mode: subprocess.Popen([sys.executable, "-c", MIRRORED_SCRIPT, mode, str(tmp_path / f"{mode}.npz")],
                                   cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for mode in ("mirrored", "plain")}
    for mode, run in runs.items():
        _, stderr = run.communicate(timeout=1200)
        assert run.returncode == 0, (mode, stderr[-4000:])
    mirrored, plain = (np.load(tmp_path / f"{mode}.npz") for mode in ("mirrored", "plain"))
    assert int(mirrored["replicas"]) == 2 and int(plain["replicas"]) == 1
    for loss in ("margin", "sampled_softmax"):
        count = sum(1 for key in plain.files if key.startswith(f"{loss}_before_"))
        updates, mirrored_updates = [], []
        for i in range(count):
            np.testing.assert_array_equal(mirrored[f"{loss}_before_{i}"], plain[f"{loss}_before_{i}"])
            updates.append((plain[f"{loss}_after_{i}"] - plain[f"{loss}_before_{i}"]).ravel())
            mirrored_updates.append((mirrored[f"{loss}_after_{i}"] - mirrored[f"{loss}_before_{i}"]).ravel())
        moved = sum(np.abs(u).max() > 1e-4 for u in updates)
        assert moved >= 4, (loss, moved, count)  # both towers' last layers and biases (the rest start behind zero kernels)
        # The same update on two replicas: without the division by the number of replicas it is twice it
        # (a relative difference of 1.0). Over all the weights together, with room for the order in which
        # the CPU collectives sum the replicas' gradients.
        update, mirrored_update = np.concatenate(updates), np.concatenate(mirrored_updates)
        difference = float(np.linalg.norm(mirrored_update - update) / np.linalg.norm(update))
        assert difference < 0.02, (loss, difference)
        # The logged loss is the global batch's, unscaled.
        assert float(mirrored[f"{loss}_loss"]) == pytest.approx(float(plain[f"{loss}_loss"]), rel=1e-3)


def test_mirrored_training_without_a_gpu_stops_instead_of_using_the_cpu():
    from twotower_pipeline.model.training import NoGpuError, _strategy

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(NoGpuError, match="sees no GPU.*Dockerfile.gpu.*'none'"):
        _strategy(TrainingConfig(distribution="mirrored"))
    assert _strategy(TrainingConfig()).num_replicas_in_sync == 1


def test_the_optimizer_takes_adams_step_on_each_embedding_rows_whole_gradient():
    """DenseGradientAdam sums an embedding's sparse gradient per row before the update: the step
    Adam takes on the same gradient as a dense tensor, rows looked up several times included."""
    from twotower_pipeline.model.training import DenseGradientAdam

    ids = tf.constant([[1, 3, 3, 0], [2, 3, 1, 1]])
    weights = {}
    for name, optimizer in (("adam", keras.optimizers.Adam(0.01)), ("dense", DenseGradientAdam(0.01))):
        keras.utils.set_random_seed(7)
        embedding = keras.layers.Embedding(5, 4)
        embedding.build((None, 4))
        for _ in range(3):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(embedding(ids) - 0.5))
            gradients = tape.gradient(loss, embedding.trainable_variables)
            assert isinstance(gradients[0], tf.IndexedSlices)
            if name == "adam":
                gradients = [tf.convert_to_tensor(gradients[0])]
            optimizer.apply(gradients, embedding.trainable_variables)
        weights[name] = embedding.get_weights()[0]
    np.testing.assert_allclose(weights["dense"], weights["adam"], rtol=1e-6, atol=1e-7)


def test_the_learning_rate_schedule_and_its_bounds():
    from twotower_pipeline.model.training import learning_rate

    assert learning_rate(TrainingConfig(learning_rate=0.003), 10) == 0.003
    cosine = learning_rate(TrainingConfig(learning_rate=0.004, learning_rate_schedule="cosine", epochs=4), 10)
    values = [float(cosine(step)) for step in (0, 20, 40)]
    assert values == pytest.approx([0.004, 0.002, 0.0], abs=1e-7)
    warm = learning_rate(TrainingConfig(learning_rate=0.004, learning_rate_schedule="cosine", epochs=4,
                                        warmup_epochs=1), 10)
    values = [float(warm(step)) for step in (0, 5, 10, 25, 40)]
    assert values == pytest.approx([0.0, 0.002, 0.004, 0.002, 0.0], abs=1e-7)
    with pytest.raises(ValueError, match="learning_rate_schedule must be one of"):
        TrainingConfig(learning_rate_schedule="step")
    with pytest.raises(ValueError, match="warmup_epochs must be"):
        TrainingConfig(epochs=3, warmup_epochs=3)
    with pytest.raises(ValueError, match="warmup_epochs must be"):
        TrainingConfig(warmup_epochs=-1)
