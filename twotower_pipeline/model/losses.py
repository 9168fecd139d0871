"""The two training losses as plain functions of tensors, each returning one loss per example,
and their reduction to the scalar a training step minimises (correct under tf.distribute).

- :func:`in_batch_softmax`: every other positive of the batch is a negative (Yi et al., 2019):
  logits are the dot products over a temperature, minus the log of how often each candidate is
  sampled as a positive (logQ correction: a popular video is lowered, so it is not pushed down
  just for being a frequent negative), with the accidental hits of :func:`accidental_hits` removed.
- :func:`margin_hinge`: the design document's contrastive loss, max(0, margin - s(u, pos) + s(u, neg)).
- :func:`replica_mean`: the mean over the examples, divided by the number of replicas in sync, as
  Keras' own losses do (``keras.losses.Loss``: ``scale_loss_for_distribution``). Under
  ``MirroredStrategy`` each replica computes the mean of its share of the batch and the optimizer
  sums the replicas' gradients, so without this N replicas would mean an N-times larger gradient;
  Keras' train step multiplies it back for the logged loss.

A batch under ``MirroredStrategy`` is split into contiguous per-replica slices, and in-batch
negatives are those of the replica's slice: :func:`liked_by_row_user` builds the mask of each
slice separately (its columns are the positions within the row's slice).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from twotower_pipeline.model.tensorflow_import import keras, tf

ops = keras.ops

MASKED_LOGIT = -1e9  # exp(MASKED_LOGIT - anything reasonable) is exactly 0 in float32


def accidental_hits(positive_rows, liked_by_user=None):
    """[B, B] boolean: candidate j is not a negative for example i (never the diagonal).

    A candidate is an accidental hit when it is the same video as example i's positive (a video
    that is several examples' positive in one batch), or, with ``liked_by_user`` ([B, B] boolean,
    see :func:`liked_by_row_user`), when example i's user liked it: a heavy user's other likes in
    the batch are no evidence against them.
    """
    positive_rows = ops.convert_to_tensor(positive_rows)
    hits = ops.equal(ops.expand_dims(positive_rows, 1), ops.expand_dims(positive_rows, 0))
    if liked_by_user is not None:
        batch = ops.shape(positive_rows)[0]
        # Under MirroredStrategy the replica's slice is shorter than the mask built for it when the
        # global batch does not split evenly: the slice's own columns come first.
        hits = ops.logical_or(hits, ops.cast(liked_by_user, "bool")[:, :batch])
    diagonal = ops.eye(ops.shape(hits)[0], dtype="bool")
    return ops.logical_and(hits, ops.logical_not(diagonal))


def in_batch_logits(users, items, temperature: float, log_q=None, excluded=None):
    """[B, B] logits of every example's user against every example's positive video:
    u_i . v_j / temperature - log q_j, with ``excluded`` pairs set to MASKED_LOGIT."""
    logits = ops.matmul(users, ops.transpose(items)) / temperature
    if log_q is not None:
        logits = logits - ops.expand_dims(ops.cast(log_q, logits.dtype), 0)
    if excluded is not None:
        logits = ops.where(excluded, ops.cast(MASKED_LOGIT, logits.dtype), logits)
    return logits


def in_batch_softmax(users, items, temperature: float, log_q=None, excluded=None):
    """Per-example loss [B]: the cross-entropy of example i's own positive (column i) among the
    batch's positives. ``users`` and ``items`` [B, D]; ``log_q`` [B] the log sampling probability
    of each example's positive (None: no correction); ``excluded`` [B, B] from :func:`accidental_hits`."""
    logits = in_batch_logits(users, items, temperature, log_q, excluded)
    labels = ops.arange(ops.shape(logits)[0])
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def margin_hinge(users, positives, negatives, margin: float):
    """Per-example loss [B]: the mean over the example's K negatives of
    max(0, margin - u.pos + u.neg). ``users``, ``positives`` [B, D]; ``negatives`` [B, K, D]."""
    positive_score = ops.sum(users * positives, axis=-1, keepdims=True)
    negative_score = ops.sum(ops.expand_dims(users, 1) * negatives, axis=-1)
    return ops.mean(ops.relu(margin - positive_score + negative_score), axis=-1)


def replicas_in_sync() -> int:
    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def replica_mean(per_example):
    """The mean over this replica's examples, divided by the number of replicas in sync: summed
    over the replicas (as the optimizer sums their gradients), the mean over the global batch."""
    loss = ops.mean(per_example)
    replicas = replicas_in_sync()
    return loss / replicas if replicas > 1 else loss


# -- the batch's side (numpy) ------------------------------------------------------------------
def likes_matrix(liked_rows: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Sparse users x catalogue rows, True where the user liked the video (their training likes)."""
    lengths = np.fromiter((len(rows) for rows in liked_rows), dtype=np.int64, count=len(liked_rows))
    users = np.repeat(np.arange(len(liked_rows), dtype=np.int64), lengths)
    rows = np.concatenate(liked_rows).astype(np.int64) if len(liked_rows) else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=bool), (users, rows)), shape=(len(liked_rows), n_items))
    matrix.sum_duplicates()
    return matrix


def replica_slices(batch: int, replicas: int) -> list[slice]:
    """How ``tf.distribute`` splits a global batch across replicas: contiguous, the first ones one
    longer when it does not divide evenly."""
    bounds = np.cumsum([0] + [len(part) for part in np.array_split(np.arange(batch), max(replicas, 1))])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def liked_by_row_user(liked: sp.csr_matrix, users: np.ndarray, positives: np.ndarray,
                      replicas: int = 1) -> np.ndarray:
    """[B, ceil(B / replicas)] boolean: entry (i, j) is whether example i's user liked the positive
    of the j-th example of i's replica slice (with one replica: of example j). The diagonal is
    True (the example's own positive is a like); :func:`accidental_hits` never masks it."""
    batch = len(users)
    slices = replica_slices(batch, replicas)
    width = max((s.stop - s.start for s in slices), default=0)
    out = np.zeros((batch, width), dtype=bool)
    for part in slices:
        if part.stop > part.start:
            block = liked[users[part]][:, positives[part]]
            out[part, : part.stop - part.start] = block.toarray()
    return out
