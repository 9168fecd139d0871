"""The user tower and the item tower (design document "Two-Tower モデル設計書 v2.0").

Both are plain Keras functional models with named inputs, so each exports to ONNX on its
own. All behaviour features of the user (genre distribution, maker taste, price preference,
recency weighting, activity level) are computed inside the user tower from the raw history,
which keeps their definition in one place for training, batch embedding and the Edge Function.
Both towers end in an L2-normalised 64-d vector: the score is their dot product.
"""

from __future__ import annotations

import math

from twotower_pipeline.model.config import TowerConfig
from twotower_pipeline.model.features import (
    HISTORY_LENGTH,
    MAX_PERFORMERS,
    MAX_TAGS,
    NUMERIC_FEATURES,
    TEXT_TERMS,
    FeatureSpec,
)
from twotower_pipeline.model.tensorflow_import import keras

layers, ops = keras.layers, keras.ops

class MaskedMean(layers.Layer):
    """Weighted mean over the history axis; padded positions have weight 0 and never leak."""

    def call(self, values, weights):
        weights = ops.expand_dims(weights, -1)
        total = ops.sum(weights, axis=1)
        return ops.sum(values * weights, axis=1) / ops.maximum(total, 1e-6)


class UserBehaviour(layers.Layer):
    """Numeric behaviour features from the history: price preference, activity, how recent the
    likes are relative to the newest one (ages are measured from it, see features.latest_histories)."""

    def call(self, price, age_days, mask):
        count = ops.sum(mask, axis=1, keepdims=True)
        safe = ops.maximum(count, 1.0)
        price_mean = ops.sum(price * mask, axis=1, keepdims=True) / safe
        price_var = ops.sum(ops.square(price - price_mean) * mask, axis=1, keepdims=True) / safe
        oldest = ops.max(age_days * mask, axis=1, keepdims=True)  # the newest like's age is 0
        span_weeks = ops.maximum(oldest / 7.0, 1.0)
        mean_age = ops.sum(ops.log(1.0 + age_days) * mask, axis=1, keepdims=True) / safe
        return ops.concatenate(
            [
                price_mean,
                ops.sqrt(price_var + 1e-6),
                ops.log(1.0 + count),
                ops.log(1.0 + count / span_weeks),
                mean_age,
            ],
            axis=1,
        )


class L2Normalise(layers.Layer):
    def call(self, x):
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


def _bag(embedding: layers.Embedding, ids, name: str):
    mask = ops.cast(ops.greater(ids, 0), "float32")
    return MaskedMean(name=f"{name}_mean")(embedding(ids), mask)


MAKER_DISTRIBUTION_SIZE = 64  # the most frequent makers get their own share; the rest share bucket 1
TOP_CATEGORIES = 3


def _top_shares(distribution, embedding: layers.Embedding, name: str):
    """The user's top-3 categories, embedded and weighted by their share (0 for an empty history)."""
    shares, indices = ops.top_k(distribution, k=min(TOP_CATEGORIES, distribution.shape[-1]))
    embedded = embedding(ops.cast(indices, "int64")) * ops.expand_dims(shares, -1)
    return layers.Flatten(name=f"{name}_top3")(embedded)


def _head(parts: list, config: TowerConfig, prefix: str, identity=None):
    """MLP over the concatenated parts -> embedding_dim, plus the id path ``identity`` as it is
    (the shared video-id embedding, or the user's mean of it), L2-normalised."""
    x = layers.Concatenate(name=f"{prefix}_features")(parts) if len(parts) > 1 else parts[0]
    x = layers.Dense(config.hidden_dim, activation="relu", name=f"{prefix}_dense_1")(x)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(config.hidden_dim // 2, activation="relu", name=f"{prefix}_dense_2")(x)
    x = layers.Dense(config.embedding_dim, name=f"{prefix}_embedding",
                     kernel_initializer="zeros" if identity is not None else "glorot_uniform")(x)
    if identity is not None:
        x = layers.Add(name=f"{prefix}_with_ids")([identity, x])
    return L2Normalise(name=f"{prefix}_vector")(x)


def _ignored(inputs: list):
    """A zero that depends on unused inputs, so every tower keeps the same named inputs."""
    return ops.sum(ops.stack([ops.sum(ops.cast(i, "float32"), axis=list(range(1, len(i.shape))))
                              for i in inputs], axis=1), axis=1, keepdims=True) * 0.0


def build_towers(spec: FeatureSpec, config: TowerConfig = TowerConfig()) -> tuple[keras.Model, keras.Model]:
    """The user tower and the item tower; with ``share_video_embedding`` the user's liked videos
    are embedded by the item tower's video-id embedding (one table learns from both sides)."""
    shared = None
    if config.share_video_embedding:
        shared = layers.Embedding(spec.videos.size, config.id_embedding_dim, name="video_id_embedding")
    return build_user_tower(spec, config, shared), build_item_tower(spec, config, shared)


def build_user_tower(spec: FeatureSpec, config: TowerConfig = TowerConfig(),
                     video_embedding: layers.Embedding | None = None) -> keras.Model:
    h = HISTORY_LENGTH
    video = keras.Input((h,), dtype="int64", name="hist_video_idx")
    genre = keras.Input((h,), dtype="int64", name="hist_genre_idx")
    maker = keras.Input((h,), dtype="int64", name="hist_maker_idx")
    price = keras.Input((h,), dtype="float32", name="hist_price")
    age = keras.Input((h,), dtype="float32", name="hist_age_days")
    age_range = keras.Input((), dtype="int64", name="user_age_range_idx")
    region = keras.Input((), dtype="int64", name="user_region_idx")
    used = set(config.user_features)

    mask = ops.cast(ops.greater(video, 0), "float32")
    parts, unused, identity = [], [], None
    if "history" in used:
        recency = mask * ops.exp(-age * (math.log(2.0) / config.recency_half_life_days))
        video_emb = video_embedding or layers.Embedding(spec.videos.size, config.history_embedding_dim,
                                                        name="history_video_embedding")
        embedded = video_emb(video)
        parts.append(MaskedMean(name="history_recency_mean")(embedded, recency))
        if config.id_path and video_embedding is not None:
            identity = parts[-1]
        for n in config.recent_likes:
            # The newest likes by position (histories are newest last): what the user liked just now.
            recent = ops.concatenate([ops.zeros_like(mask[:, :h - n]), ops.ones_like(mask[:, h - n:])], axis=1) * mask
            parts.append(MaskedMean(name=f"history_newest_{n}_mean")(embedded, recent))
    if "categories" in used:
        genre_distribution = MaskedMean(name="genre_distribution")(ops.one_hot(genre, spec.genres.size), mask)
        # Makers are ordered by frequency, so the first indices are the most frequent makers.
        maker_bucket = ops.where(ops.less(maker, MAKER_DISTRIBUTION_SIZE), maker, 1)
        maker_distribution = MaskedMean(name="maker_distribution")(
            ops.one_hot(maker_bucket, MAKER_DISTRIBUTION_SIZE), mask
        )
        top_genres = _top_shares(genre_distribution,
                                 layers.Embedding(spec.genres.size, 16, name="top_genre_embedding"), "genres")
        top_makers = _top_shares(maker_distribution,
                                 layers.Embedding(MAKER_DISTRIBUTION_SIZE, 16, name="top_maker_embedding"), "makers")
        maker_emb = layers.Embedding(spec.makers.size, config.category_dim, name="history_maker_embedding")
        maker_taste = MaskedMean(name="maker_taste")(maker_emb(maker), mask)
        parts += [genre_distribution, maker_distribution, top_genres, top_makers, maker_taste]
    else:
        unused += [genre, maker]
    if "behaviour" in used:
        parts.append(UserBehaviour(name="behaviour")(price, age, mask))
    else:
        unused.append(price)
        if "history" not in used:
            unused.append(age)
    if "demographics" in used:
        parts += [layers.Embedding(spec.age_ranges.size, 8, name="age_range_embedding")(age_range),
                  layers.Embedding(spec.regions.size, 8, name="region_embedding")(region)]
    else:
        unused += [age_range, region]
    if unused:
        parts.append(_ignored(unused))
    return keras.Model(
        inputs={"hist_video_idx": video, "hist_genre_idx": genre, "hist_maker_idx": maker,
                "hist_price": price, "hist_age_days": age, "user_age_range_idx": age_range,
                "user_region_idx": region},
        outputs=_head(parts, config, "user", identity),
        name="user_tower",
    )


def build_item_tower(spec: FeatureSpec, config: TowerConfig = TowerConfig(),
                     video_embedding: layers.Embedding | None = None) -> keras.Model:
    video = keras.Input((), dtype="int64", name="video_idx")
    genre = keras.Input((), dtype="int64", name="genre_idx")
    maker = keras.Input((), dtype="int64", name="maker_idx")
    performers = keras.Input((MAX_PERFORMERS,), dtype="int64", name="performer_idx")
    tags = keras.Input((MAX_TAGS,), dtype="int64", name="tag_idx")
    text_idx = keras.Input((TEXT_TERMS,), dtype="int64", name="text_idx")
    text_weight = keras.Input((TEXT_TERMS,), dtype="float32", name="text_weight")
    numeric = keras.Input((len(NUMERIC_FEATURES),), dtype="float32", name="numeric")
    used = set(config.item_features)

    parts, unused, identity = [], [], None
    if "categories" in used:
        parts += [layers.Embedding(spec.genres.size, config.category_dim, name="genre_embedding")(genre),
                  layers.Embedding(spec.makers.size, config.category_dim, name="maker_embedding")(maker)]
    else:
        unused += [genre, maker]
    if "video_id" in used:
        parts.append((video_embedding or layers.Embedding(spec.videos.size, config.id_embedding_dim,
                                                          name="video_id_embedding"))(video))
        if config.id_path and video_embedding is not None:
            identity = parts[-1]
    else:
        unused.append(video)
    if "text" in used:
        # TF-IDF x dense(128): an embedding bag weighted by the TF-IDF of the top terms.
        parts.append(ops.sum(
            layers.Embedding(spec.text_size, config.text_dim, name="text_dense")(text_idx)
            * ops.expand_dims(text_weight, -1),
            axis=1,
        ))
    else:
        unused += [text_idx, text_weight]
    if "performers" in used:
        parts.append(_bag(layers.Embedding(spec.performers.size, config.bag_dim, name="performer_embedding"),
                          performers, "performers"))
    else:
        unused.append(performers)
    if "tags" in used:
        parts.append(_bag(layers.Embedding(spec.tags.size, config.bag_dim, name="tag_embedding"), tags, "tags"))
    else:
        unused.append(tags)
    if "numeric" in used:
        parts.append(layers.Dense(16, activation="relu", name="numeric_dense")(numeric))
    else:
        unused.append(numeric)
    if unused:
        parts.append(_ignored(unused))
    return keras.Model(
        inputs={"video_idx": video, "genre_idx": genre, "maker_idx": maker, "performer_idx": performers,
                "tag_idx": tags, "text_idx": text_idx, "text_weight": text_weight, "numeric": numeric},
        outputs=_head(parts, config, "item", identity),
        name="item_tower",
    )
