"""Synthetic catalogue and likes in the app's own tables, for demos, tests and benchmarks.

Random likes would make every model look equally bad, so the data has hidden structure a
two-tower model can learn: videos and users live in one latent space built from genres,
makers, performers and tags; a user's likes are drawn with probability
``∝ exp(affinity + popularity + price term)`` among videos that existed at the time and that
the user has not liked yet; and tastes drift during the six months of likes, so a
time-based split is harder than a random one. Text (title, description) is built from word
pools tied to genre and tags, with noise words, so text features carry signal too.

About 80% of users also have a ``profiles`` row (age range, region), derived from their
hidden start taste plus noise, so demographics carry real but modest signal: age ranges lean
towards different genres, and each region's users lean a little towards a few "local" makers.

Everything is drawn from one seeded numpy Generator per part, so the same ``DemoSize`` and
``now`` give identical frames, ids included. Profiles have a Generator of their own (the
fifth child of the seed), so adding them left every other frame exactly as it was.

The hidden truth comes along as ``DemoData.truth`` (:class:`DemoTruth`), built from values the
generator has already drawn (it draws nothing more, so every frame is exactly as before), and
:func:`oracle_scores` turns it into the generator's own log-probability of each next like: the
ceiling any model trained on these likes can approach.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

LIKE_WINDOW = timedelta(days=182)
"""Likes span the six months (26 weeks) ending at ``now``."""
CATALOGUE_SPAN = timedelta(days=3 * 365)
"""Videos were created over the three years before ``now``."""
LATENT_DIM = 32
MIN_LIKES_PER_USER = 5
TASTE_SHARPNESS = 3.5
"""How strongly affinity beats popularity and noise; tuned so a user's top-3 genres hold ~70% of their likes."""
MAX_USER_SHARE = 0.05
"""No single user has more than this share of all likes (unless there are too few users)."""

# name, super-genre (related genres attract the same users), median minutes, theme words
# (the genre's tags, and the words its titles and descriptions are made of). Listed from the
# most to the least common genre.
_GENRES: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("Drama", "story", 105, ("family secrets", "reunion", "betrayal", "inheritance", "hometown", "letters", "forgiveness", "rivalry", "courtroom", "grief")),
    ("Comedy", "story", 35, ("prank", "roommates", "wedding", "sitcom", "parody", "stand-up", "misadventure", "blunder", "sketch", "farce")),
    ("Romance", "story", 95, ("first love", "summer fling", "long distance", "proposal", "heartbreak", "blind date", "office romance", "love triangle", "second chance", "soulmates")),
    ("Action", "spectacle", 110, ("heist", "car chase", "martial arts", "mercenary", "explosion", "rescue mission", "showdown", "bodyguard", "shootout", "stunts")),
    ("Thriller", "suspense", 100, ("conspiracy", "hostage", "stalker", "double agent", "cover-up", "manhunt", "blackmail", "paranoia", "ransom", "escape")),
    ("Anime", "spectacle", 24, ("mecha", "isekai", "shonen", "magical girl", "slice of life", "idol", "school club", "cel shaded", "light novel", "chibi")),
    ("Documentary", "real", 75, ("interview", "investigation", "archival footage", "biography", "expose", "true story", "field report", "eyewitness", "profile", "whistleblower")),
    ("Horror", "suspense", 90, ("haunted house", "zombie", "possession", "slasher", "curse", "ghost", "creature", "cult", "nightmare", "seance")),
    ("Cooking", "lifestyle", 20, ("ramen", "sushi", "baking", "street food", "knife skills", "dessert", "barbecue", "vegan recipes", "home cooking", "bento")),
    ("Music", "performance", 60, ("concert", "live session", "acoustic", "orchestra", "jazz", "hip hop", "rehearsal", "songwriter", "music video", "karaoke")),
    ("Mystery", "suspense", 95, ("detective", "whodunit", "missing person", "locked room", "clue", "alibi", "cold case", "amateur sleuth", "puzzle", "riddle")),
    ("Science Fiction", "spectacle", 115, ("spaceship", "time travel", "android", "alien contact", "dystopia", "cyberpunk", "terraforming", "clone", "wormhole", "robot uprising")),
    ("Travel", "lifestyle", 30, ("backpacking", "road trip", "hot springs", "city walk", "island hopping", "train journey", "mountain village", "night market", "castle tour", "camping")),
    ("Fantasy", "spectacle", 120, ("dragon", "wizard", "enchanted forest", "quest", "sword", "fairy", "kingdom", "prophecy", "sorcery", "elves")),
    ("Crime", "suspense", 105, ("yakuza", "gangster", "mafia", "undercover cop", "prison", "smuggling", "cartel", "fraud", "hitman", "police procedural")),
    ("Sports", "performance", 45, ("baseball", "soccer", "marathon", "boxing", "tennis", "basketball", "sumo", "cycling", "golf", "highlights")),
    ("Fitness", "lifestyle", 25, ("yoga", "pilates", "interval training", "stretching", "weight training", "running form", "home workout", "meditation", "core training", "posture")),
    ("Nature", "real", 50, ("wildlife", "ocean", "rainforest", "birdwatching", "volcano", "coral reef", "migration", "glacier", "insects", "national park")),
    ("Family", "story", 85, ("kids", "parenting", "pets", "holiday", "grandparents", "siblings", "picnic", "birthday", "adoption", "school days")),
    ("History", "real", 70, ("samurai", "world war", "ancient rome", "edo period", "archaeology", "dynasty", "revolution", "medieval", "empire", "civil war")),
    ("Gaming", "performance", 40, ("speedrun", "let's play", "esports", "walkthrough", "retro games", "strategy games", "rpg", "fighting games", "tournament", "game review")),
    ("Dance", "performance", 30, ("ballet", "street dance", "choreography", "tango", "breakdance", "salsa", "tap dance", "contemporary dance", "dance battle", "ballroom")),
    ("Fashion", "lifestyle", 20, ("runway", "street style", "makeup", "styling", "vintage clothing", "haute couture", "hair styling", "modeling", "lookbook", "skincare")),
    ("Education", "real", 45, ("lecture", "tutorial", "language learning", "mathematics", "physics", "coding", "exam prep", "study with me", "science experiment", "economics")),
)
# Tags any genre can carry: format, tone and editorial labels.
_GENERAL_TAGS: tuple[str, ...] = (
    "HD", "4K", "subtitled", "dubbed", "short", "feature length", "series", "new release", "classic",
    "award winner", "exclusive", "remastered", "director's cut", "behind the scenes", "limited release",
    "staff pick", "trending", "indie", "blockbuster", "black and white", "widescreen", "slow paced",
    "fast paced", "dialogue heavy", "no dialogue", "ensemble cast", "debut", "veteran cast", "sequel",
    "prequel", "remake", "pilot episode", "season finale", "bonus content", "extended edition",
    "soundtrack", "original story", "adaptation", "cult classic", "crowd pleaser", "hidden gem",
    "late night", "weekend watch", "binge-worthy", "feel-good", "dark", "uplifting", "relaxing",
    "intense", "emotional", "funny", "nostalgic", "mature", "all ages", "bilingual", "vertical video",
    "first person", "documentary style", "true crime", "slow cinema",
)
_NOISE_WORDS: tuple[str, ...] = (
    "night", "city", "summer", "winter", "letter", "promise", "journey", "secret", "morning", "river",
    "light", "shadow", "road", "home", "story", "memory", "dream", "window", "garden", "station",
    "bridge", "season", "weekend", "signal", "echo", "voice", "mirror", "island", "harbor", "street",
    "rain", "snow", "fire", "glass", "paper", "silver", "golden", "blue", "red", "quiet", "last",
    "first", "little", "long", "hidden", "open", "broken", "lucky", "wild", "late",
)
_ADJECTIVES: tuple[str, ...] = (
    "gripping", "gentle", "bold", "quiet", "surprising", "heartfelt", "sharp", "playful", "moody",
    "sweeping", "intimate", "lively", "raw", "polished", "offbeat", "tender",
)
_MAKER_FIRST: tuple[str, ...] = (
    "Blue", "Red", "Golden", "Silver", "Crimson", "Green", "Northern", "Eastern", "Western", "Southern",
    "Bright", "Silent", "Rising", "Midnight", "Morning", "Wild", "Iron", "Crystal", "Paper", "Velvet",
    "Lucky", "Hidden", "Open", "Little", "Grand", "Royal", "Urban", "Coastal", "Lunar", "Solar",
    "Amber", "Scarlet", "Jade", "Cobalt", "Ivory", "Maple", "Cedar", "Willow", "Sakura", "Neon",
)
_MAKER_SECOND: tuple[str, ...] = (
    "Harbor", "Lantern", "Fox", "Crane", "River", "Mountain", "Bridge", "Garden", "Tower", "Island",
    "Comet", "Arrow", "Anchor", "Falcon", "Lotus", "Owl", "Tiger", "Wave", "Forest", "Gate",
    "Star", "Moon", "Sun", "Cloud", "Stone", "Frame", "Reel", "Lens", "Stage", "Screen",
    "Door", "Window", "Road", "Field", "Valley", "Bay", "Peak", "Canyon", "Meadow", "Orchard",
)
_MAKER_SUFFIX: tuple[str, ...] = (
    "Pictures", "Studios", "Films", "Media", "Productions", "Works", "Entertainment", "Visual",
)
_SYLLABLES: tuple[str, ...] = (
    "a", "ka", "sa", "ta", "na", "ha", "ma", "ya", "ra", "ki", "shi", "chi", "mi", "ri", "yu",
    "ku", "su", "ho", "mo", "yo", "ko", "to", "no", "ne", "e", "hi", "sho", "ryo", "aki", "ren",
)
_NAME_ENDINGS: tuple[str, ...] = ("", "ko", "mi", "na", "ka", "ri", "ya", "to", "ki", "ne")
_FAMILY_NAMES: tuple[str, ...] = (
    "Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura", "Kobayashi",
    "Kato", "Yoshida", "Yamada", "Sasaki", "Yamaguchi", "Matsumoto", "Inoue", "Kimura", "Hayashi",
    "Shimizu", "Yamazaki", "Mori", "Abe", "Ikeda", "Hashimoto", "Yamashita", "Ishikawa", "Nakajima",
    "Maeda", "Fujita", "Ogawa", "Goto", "Okada", "Hasegawa", "Murakami", "Kondo", "Ishii", "Saito",
    "Sakamoto", "Endo", "Aoki", "Fujii", "Nishimura", "Fukuda", "Ota", "Miura", "Fujiwara", "Okamoto",
    "Matsuda", "Nakagawa", "Nakano", "Harada", "Ono", "Tamura", "Takeuchi", "Kaneko", "Wada",
    "Nakayama", "Ishida", "Ueda", "Morita", "Hara", "Shibata", "Sakai", "Kudo", "Yokoyama", "Miyazaki",
    "Miyamoto", "Uchida", "Takagi", "Ando", "Taniguchi", "Ohno", "Maruyama", "Imai", "Takada",
    "Fujimoto", "Takeda", "Murata", "Ueno", "Sugiyama", "Masuda", "Sugawara", "Hirano", "Otsuka",
    "Chiba", "Kubo", "Matsui", "Iwasaki", "Sakurai", "Kinoshita", "Noguchi", "Matsuo", "Nomura",
    "Kikuchi", "Sano", "Onishi", "Sugimoto", "Arai", "Hamada", "Ichikawa",
)
# Makers sell in one of three price bands; prices are log-normal around the band's median.
_PRICE_TIER_MEDIAN_YEN = np.array([880.0, 1980.0, 3980.0])
_PRICE_TIER_SHARE = np.array([0.3, 0.5, 0.2])
_REFERENCE_PRICE_YEN = 1980.0

PROFILE_SHARE = 0.8
"""Share of users with a profiles row; the rest never filled one in."""
PROFILE_MISSING_SHARE = 0.05
"""Share of profile rows with age_range and/or region left NULL."""
AGE_RANGES: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
_AGE_RANGE_SHARE = np.array([0.16, 0.26, 0.24, 0.19, 0.15])
AGE_TASTE_CORRELATION = 0.6
"""Correlation between the age score (which picks the age range) and the user's taste along
the genres' age lean; the rest is noise, so age predicts taste only somewhat."""
# How much older (+) or younger (-) each genre's audience is; the age axis in taste space is
# the lean-weighted sum of the genre vectors. Genres not listed lean neither way.
_GENRE_AGE_LEAN: dict[str, float] = {
    "Drama": 0.8, "Romance": -0.5, "Thriller": 0.3, "Anime": -1.0, "Documentary": 0.9,
    "Horror": -0.5, "Cooking": 0.5, "Music": -0.3, "Mystery": 0.5, "Science Fiction": -0.2,
    "Travel": 0.7, "Fantasy": -0.6, "Crime": 0.4, "Sports": 0.2, "Nature": 0.8, "Family": 0.6,
    "History": 1.0, "Gaming": -1.0, "Dance": -0.7, "Fashion": -0.8, "Education": -0.4,
}
# Roughly by population, tilted a little towards the big metropolitan areas (streaming users
# are), so Kanto and then Kansai are the biggest.
REGIONS: tuple[str, ...] = ("Hokkaido", "Tohoku", "Kanto", "Chubu", "Kansai", "Chugoku", "Shikoku", "Kyushu")
_REGION_SHARE = np.array([0.05, 0.06, 0.36, 0.13, 0.20, 0.06, 0.04, 0.10])
REGION_LOCAL_MAKERS = 2
"""Makers based in each region; users whose taste leans towards them are likelier to live there."""
REGION_TASTE_PULL = 0.5
"""Log-odds added to a region per standard deviation of the user's affinity to its makers (mild)."""

_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "videos": ("id", "title", "description", "genre", "maker", "price", "duration_seconds", "created_at"),
    "tags": ("id", "name"),
    "video_tags": ("video_id", "tag_id"),
    "performers": ("id", "name"),
    "video_performers": ("video_id", "performer_id"),
    "likes": ("id", "user_id", "video_id", "created_at"),
    "profiles": ("id", "age_range", "region", "created_at"),
}
DEMO_TABLES: tuple[str, ...] = tuple(_TABLE_COLUMNS)
"""The app tables the demo data fills, in load order (parents before children)."""
_COPY_CHUNK_ROWS = 100_000
_SAMPLING_BLOCK = 256


class DemoDataError(ValueError):
    """The demo data cannot be generated or loaded as asked."""


@dataclass(frozen=True)
class DemoSize:
    videos: int = 50_000
    users: int = 1_000
    likes: int = 100_000
    seed: int = 7


def tiny_demo_size(seed: int = 7) -> DemoSize:
    """Small enough for unit tests (well under a second), big enough to show the structure."""
    return DemoSize(videos=600, users=60, likes=3_000, seed=seed)


@dataclass(frozen=True, eq=False)  # frames have no single truth value; compare them with pandas
class DemoData:
    """One frame per app table, with exactly the app's column names."""

    videos: pd.DataFrame
    tags: pd.DataFrame
    video_tags: pd.DataFrame
    performers: pd.DataFrame
    video_performers: pd.DataFrame
    likes: pd.DataFrame
    profiles: pd.DataFrame  # id is the user's id (likes.user_id); ~20% of users have none
    truth: DemoTruth | None = field(default=None, repr=False)
    """What the likes were drawn from (not an app table; never loaded)."""

    def pipeline_frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The catalogue, likes and profiles as the pipeline reads them from the database
        (read_catalogue's format and order, read_likes', read_profiles'), without a database."""
        performers = (self.video_performers.merge(self.performers, left_on="performer_id", right_on="id")
                      .groupby("video_id")["name"].agg(sorted))
        tags = self.video_tags.merge(self.tags, left_on="tag_id", right_on="id").groupby("video_id")["name"].agg(sorted)
        catalogue = self.videos.assign(
            performers=self.videos["id"].map(performers).map(lambda names: names if isinstance(names, list) else []),
            tags=self.videos["id"].map(tags).map(lambda names: names if isinstance(names, list) else []),
        ).sort_values("id", kind="stable").reset_index(drop=True)
        likes = self.likes[["user_id", "video_id", "created_at"]].sort_values(
            ["created_at", "user_id", "video_id"], kind="stable").reset_index(drop=True)
        profiles = (self.profiles.rename(columns={"id": "user_id"})[["user_id", "age_range", "region"]]
                    .sort_values("user_id").reset_index(drop=True))
        return catalogue, likes, profiles

    def counts(self) -> dict[str, int]:
        return {table: len(getattr(self, table)) for table in DEMO_TABLES}


# -- generation ----------------------------------------------------------------------------


def generate_demo_data(size: DemoSize, now: datetime) -> DemoData:
    """Draw the catalogue, the users' hidden tastes and their likes up to ``now``."""
    _check_size(size)
    if now.tzinfo is None or now.utcoffset() is None:
        raise DemoDataError("now must be timezone-aware (e.g. datetime.now(timezone.utc))")
    now_s = int(now.astimezone(UTC).timestamp())
    # The first four children are the same as spawn(4)'s, which is all there was before
    # profiles: they draw from the fifth, so the other frames did not change.
    catalogue_rng, users_rng, likes_rng, ids_rng, profiles_rng = (
        np.random.default_rng(seq) for seq in np.random.SeedSequence(size.seed).spawn(5)
    )
    catalogue = _Catalogue.draw(catalogue_rng, size, now_s)
    users = _Users.draw(users_rng, size, catalogue)
    like_user, like_video, like_s = _draw_likes(likes_rng, size, catalogue, users, now_s)
    profiles = _Profiles.draw(profiles_rng, size, catalogue, users, like_user, like_s, now_s)
    return _frames(ids_rng, size, catalogue, users, like_user, like_video, like_s, profiles, now_s)


def _check_size(size: DemoSize) -> None:
    if size.videos < 50 or size.users < 1:
        raise DemoDataError(f"need at least 50 videos and 1 user, got {size}")
    if size.likes < MIN_LIKES_PER_USER * size.users:
        raise DemoDataError(
            f"{size.likes} likes cannot give each of {size.users} users at least "
            f"{MIN_LIKES_PER_USER} likes; ask for at least {MIN_LIKES_PER_USER * size.users}"
        )
    if size.likes > _user_like_cap(size) * size.users:
        raise DemoDataError(
            f"{size.likes} likes are too many for {size.users} users and {size.videos} videos: "
            f"a user can like at most {_user_like_cap(size)} of them"
        )


def _user_like_cap(size: DemoSize) -> int:
    # ~5% of all likes, loosened only when there are too few users to share them out,
    # and never more than a third of the catalogue, which would leave nothing to choose from.
    share_cap = max(int(np.ceil(MAX_USER_SHARE * size.likes)), int(np.ceil(2 * size.likes / size.users)))
    return max(MIN_LIKES_PER_USER, min(share_cap, size.videos // 3))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def _draw_within_groups(
    rng: np.random.Generator, item_group: np.ndarray, item_weight: np.ndarray, wanted_group: np.ndarray
) -> np.ndarray:
    """One item per entry of ``wanted_group``, ∝ weight among the items of that group.

    Entries whose group has no items fall back to all items, so small catalogues still work.
    """
    order = np.argsort(item_group, kind="stable")
    sorted_group = item_group[order]
    cum = np.concatenate([[0.0], np.cumsum(item_weight[order], dtype=np.float64)])
    wanted = np.asarray(wanted_group).ravel()
    start = np.searchsorted(sorted_group, wanted, side="left")
    end = np.searchsorted(sorted_group, wanted, side="right")
    empty = start == end
    start[empty], end[empty] = 0, len(order)
    target = cum[start] + rng.random(len(wanted)) * (cum[end] - cum[start])
    position = np.clip(np.searchsorted(cum, target, side="right") - 1, start, end - 1)
    return order[position].reshape(np.shape(wanted_group))


def _distinct_pick(
    rng: np.random.Generator, candidates: np.ndarray, wanted: np.ndarray, spares: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``wanted[i]`` distinct items from row i of candidates; returns (row, item) pairs.

    Items are taken at random among a row's distinct candidates; the last ``spares`` columns
    (distinct by construction) are used only when the others have too few distinct items.
    """
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates, order, axis=1)
    repeat_sorted = np.zeros(candidates.shape, dtype=bool)
    repeat_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    repeat = np.empty_like(repeat_sorted)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    column = np.arange(candidates.shape[1])
    key = rng.random(candidates.shape) + (column >= candidates.shape[1] - spares)
    key[repeat] = 3.0  # repeats sort last and are never taken
    rank = np.argsort(key, axis=1)
    keep = (column[None, :] < wanted[:, None]) & (np.take_along_axis(key, rank, axis=1) < 3.0)
    rows, cols = np.nonzero(keep)
    return rows, np.take_along_axis(candidates, rank, axis=1)[rows, cols]


def _spare_items(rng: np.random.Generator, n_rows: int, n_items: int, count: int) -> np.ndarray:
    """``count`` distinct items per row (consecutive from a random start), for _distinct_pick."""
    return (rng.integers(n_items, size=n_rows)[:, None] + np.arange(count)[None, :]) % n_items


def _unique_names(names: list[str]) -> list[str]:
    """Number repeated names ("X", "X 2", ...): the app's name columns are unique."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out


def _capitalised(words: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in words.split(" "))


@dataclass
class _Catalogue:
    """Videos with their hidden vectors, sorted by created_at (oldest first)."""

    genre_vectors: np.ndarray
    genre_of_video: np.ndarray
    maker_names: list[str]
    maker_of_video: np.ndarray
    maker_home_genre: np.ndarray
    maker_size: np.ndarray
    maker_vectors: np.ndarray
    performer_names: list[str]
    performer_genre: np.ndarray
    performer_popularity: np.ndarray
    performer_vectors: np.ndarray
    tag_names: list[str]
    tag_genre: np.ndarray  # -1 for general tags
    tag_popularity: np.ndarray
    tag_vectors: np.ndarray
    video_tag_pairs: tuple[np.ndarray, np.ndarray]
    video_performer_pairs: tuple[np.ndarray, np.ndarray]
    price: np.ndarray
    duration_s: np.ndarray
    created_s: np.ndarray
    vectors: np.ndarray
    popularity: np.ndarray  # log-weight added to every user's affinity
    titles: list[str]
    descriptions: list[str]

    @classmethod
    def draw(cls, rng: np.random.Generator, size: DemoSize, now_s: int) -> _Catalogue:
        n_videos = size.videos
        n_genres = len(_GENRES)
        genre_share = 1.0 / (np.arange(n_genres) + 2.0) ** 0.9
        genre_share /= genre_share.sum()

        # Genres of one super-genre point the same way, so their fans overlap.
        super_genres = sorted({g[1] for g in _GENRES})
        super_vectors = _unit_rows(rng.normal(size=(len(super_genres), LATENT_DIM)))
        genre_super = np.array([super_genres.index(g[1]) for g in _GENRES])
        genre_vectors = _unit_rows(
            rng.normal(size=(n_genres, LATENT_DIM)) / np.sqrt(LATENT_DIM)
            + 0.45 * super_vectors[genre_super]
        )

        # Makers: a home genre plus a mix, a size (how much they publish) and a price tier.
        n_makers = max(5, n_videos // 100)
        maker_home_genre = rng.choice(n_genres, size=n_makers, p=genre_share)
        maker_mix = 0.35 * rng.dirichlet(np.full(n_genres, 0.25), size=n_makers)
        maker_mix[np.arange(n_makers), maker_home_genre] += 0.65
        maker_size = rng.lognormal(0.0, 0.9, size=n_makers)
        maker_tier = rng.choice(3, size=n_makers, p=_PRICE_TIER_SHARE)
        maker_vectors = _unit_rows(
            maker_mix @ genre_vectors + rng.normal(size=(n_makers, LATENT_DIM)) / np.sqrt(LATENT_DIM)
        )
        maker_names = _unique_names(
            [
                f"{_MAKER_FIRST[a]} {_MAKER_SECOND[b]} {_MAKER_SUFFIX[c]}"
                for a, b, c in zip(
                    rng.integers(len(_MAKER_FIRST), size=n_makers),
                    rng.integers(len(_MAKER_SECOND), size=n_makers),
                    rng.integers(len(_MAKER_SUFFIX), size=n_makers),
                )
            ]
        )

        # Performers: most work for one maker (and so its home genre); a few freelance.
        n_performers = max(10, n_videos // 20)
        freelance = rng.random(n_performers) < 0.15
        performer_maker = _draw_within_groups(
            rng, np.zeros(n_makers, dtype=np.int64), maker_size, np.zeros(n_performers, dtype=np.int64)
        )
        performer_maker[freelance] = -1
        performer_genre = np.where(
            freelance, rng.choice(n_genres, size=n_performers, p=genre_share), maker_home_genre[performer_maker]
        )
        performer_popularity = rng.lognormal(0.0, 1.0, size=n_performers)
        performer_vectors = _unit_rows(
            rng.normal(size=(n_performers, LATENT_DIM)) / np.sqrt(LATENT_DIM)
            + 0.5 * genre_vectors[performer_genre]
        )
        given = [
            (_SYLLABLES[a] + _SYLLABLES[b] + _NAME_ENDINGS[c]).capitalize()
            for a, b, c in zip(
                rng.integers(len(_SYLLABLES), size=n_performers),
                rng.integers(len(_SYLLABLES), size=n_performers),
                rng.integers(len(_NAME_ENDINGS), size=n_performers),
            )
        ]
        family = rng.integers(len(_FAMILY_NAMES), size=n_performers)
        performer_names = _unique_names([f"{g} {_FAMILY_NAMES[f]}" for g, f in zip(given, family)])

        # Tags: ~300, four in five tied to a genre (round-robin, so every genre gets some).
        n_tags = max(20, min(300, n_videos // 150))
        n_general = min(len(_GENERAL_TAGS), round(0.2 * n_tags))
        genre_tags = [(g, _GENRES[g][3][w]) for w in range(10) for g in range(n_genres)][: n_tags - n_general]
        tag_names = [name for _, name in genre_tags] + list(_GENERAL_TAGS[:n_general])
        tag_genre = np.array([g for g, _ in genre_tags] + [-1] * n_general)
        tag_popularity = rng.lognormal(0.0, 0.8, size=len(tag_names))
        tag_vectors = rng.normal(size=(len(tag_names), LATENT_DIM)) / np.sqrt(LATENT_DIM)
        tagged = tag_genre >= 0
        tag_vectors[tagged] += 0.8 * genre_vectors[tag_genre[tagged]]
        tag_vectors = _unit_rows(tag_vectors)

        # Videos, oldest first: created over three years, more of them recently.
        age_s = np.sort(rng.beta(1.0, 1.8, size=n_videos))[::-1] * CATALOGUE_SPAN.total_seconds()
        created_s = now_s - np.maximum(age_s.astype(np.int64), 3600)
        maker_of_video = _draw_within_groups(
            rng, np.zeros(n_makers, dtype=np.int64), maker_size, np.zeros(n_videos, dtype=np.int64)
        )
        # Mostly the maker's own mix; sometimes any genre, weighted by how common it is.
        from_mix = (rng.random(n_videos)[:, None] > np.cumsum(maker_mix[maker_of_video], axis=1)).sum(axis=1)
        genre_of_video = np.where(
            rng.random(n_videos) < 0.9,
            np.minimum(from_mix, n_genres - 1),
            rng.choice(n_genres, size=n_videos, p=genre_share),
        )

        # 1-3 performers, mostly from the video's maker.
        performer_wanted = rng.choice([1, 2, 3], size=n_videos, p=[0.55, 0.3, 0.15])
        maker_pick = _draw_within_groups(
            rng, performer_maker, performer_popularity, np.repeat(maker_of_video[:, None], 5, axis=1)
        )
        any_pick = _draw_within_groups(
            rng, np.zeros(n_performers, dtype=np.int64), performer_popularity, np.zeros((n_videos, 5), dtype=np.int64)
        )
        performer_candidates = np.hstack(
            [
                np.where(rng.random((n_videos, 5)) < 0.8, maker_pick, any_pick),
                _spare_items(rng, n_videos, n_performers, 3),
            ]
        )
        video_performer_pairs = _distinct_pick(rng, performer_candidates, performer_wanted, spares=3)

        # 3-8 tags, mostly the genre's own.
        tag_wanted = 3 + rng.binomial(5, 0.35, size=n_videos)
        genre_pick = _draw_within_groups(
            rng, tag_genre, tag_popularity, np.repeat(genre_of_video[:, None], 14, axis=1)
        )
        any_tag = _draw_within_groups(
            rng, np.zeros(len(tag_names), dtype=np.int64), tag_popularity, np.zeros((n_videos, 14), dtype=np.int64)
        )
        tag_candidates = np.hstack(
            [
                np.where(rng.random((n_videos, 14)) < 0.7, genre_pick, any_tag),
                _spare_items(rng, n_videos, len(tag_names), 8),
            ]
        )
        video_tag_pairs = _distinct_pick(rng, tag_candidates, tag_wanted, spares=8)

        # Price: log-normal around the maker's tier, in the shop's "…80 yen" steps.
        raw_price = _PRICE_TIER_MEDIAN_YEN[maker_tier[maker_of_video]] * rng.lognormal(0.0, 0.3, size=n_videos)
        price = np.round(np.clip(raw_price, 500.0, 6000.0) / 100.0) * 100.0 - 20.0
        median_minutes = np.array([g[2] for g in _GENRES], dtype=np.float64)
        duration_s = np.clip(
            60.0 * median_minutes[genre_of_video] * rng.lognormal(0.0, 0.35, size=n_videos), 600, 10_800
        ).astype(np.int64)

        # Hidden vector: what the video is about, plus noise nobody can see.
        vectors = (
            1.0 * genre_vectors[genre_of_video]
            + 0.5 * maker_vectors[maker_of_video]
            + 0.5 * _mean_rows(performer_vectors, video_performer_pairs, n_videos)
            + 0.4 * _mean_rows(tag_vectors, video_tag_pairs, n_videos)
            + 0.5 * rng.normal(size=(n_videos, LATENT_DIM)) / np.sqrt(LATENT_DIM)
        )
        vectors = _unit_rows(vectors) * 1.2
        # Popularity: heavy-tailed, partly the maker's and the performers' pull.
        pull = (
            0.35 * np.log(maker_size)[maker_of_video]
            + 0.3 * _mean_rows(np.log(performer_popularity)[:, None], video_performer_pairs, n_videos)[:, 0]
            + rng.normal(size=n_videos)
        )
        popularity = 1.2 * (pull - pull.mean()) / pull.std()

        titles, descriptions = _texts(
            rng, genre_of_video, tag_names, tag_genre, video_tag_pairs, performer_names,
            video_performer_pairs, maker_names, maker_of_video, duration_s,
        )
        return cls(
            genre_vectors=genre_vectors, genre_of_video=genre_of_video, maker_names=maker_names,
            maker_of_video=maker_of_video, maker_home_genre=maker_home_genre, maker_size=maker_size,
            maker_vectors=maker_vectors, performer_names=performer_names, performer_genre=performer_genre,
            performer_popularity=performer_popularity, performer_vectors=performer_vectors,
            tag_names=tag_names, tag_genre=tag_genre, tag_popularity=tag_popularity,
            tag_vectors=tag_vectors, video_tag_pairs=video_tag_pairs,
            video_performer_pairs=video_performer_pairs, price=price, duration_s=duration_s,
            created_s=created_s, vectors=vectors, popularity=popularity, titles=titles,
            descriptions=descriptions,
        )


def _mean_rows(vectors: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], n_rows: int) -> np.ndarray:
    """Mean of the vectors attached to each row through (row, item) pairs."""
    rows, items = pairs
    total = np.zeros((n_rows, vectors.shape[1]))
    np.add.at(total, rows, vectors[items])
    return total / np.maximum(np.bincount(rows, minlength=n_rows), 1)[:, None]


def _texts(
    rng: np.random.Generator,
    genre_of_video: np.ndarray,
    tag_names: list[str],
    tag_genre: np.ndarray,
    video_tag_pairs: tuple[np.ndarray, np.ndarray],
    performer_names: list[str],
    video_performer_pairs: tuple[np.ndarray, np.ndarray],
    maker_names: list[str],
    maker_of_video: np.ndarray,
    duration_s: np.ndarray,
) -> tuple[list[str], list[str]]:
    """Titles and descriptions: genre words, tag names and credits, mixed with noise words."""
    n_videos = len(genre_of_video)
    n_genres = len(_GENRES)
    # Theme words: from the video's genre four times in five, otherwise from any genre.
    theme_genre = np.where(
        rng.random((n_videos, 3)) < 0.8, genre_of_video[:, None], rng.integers(n_genres, size=(n_videos, 3))
    ).tolist()
    theme_word = rng.integers(10, size=(n_videos, 3)).tolist()
    noise = rng.integers(len(_NOISE_WORDS), size=(n_videos, 5)).tolist()
    adjective = rng.integers(len(_ADJECTIVES), size=n_videos).tolist()
    template = rng.integers(5, size=n_videos).tolist()
    volume = rng.integers(2, 9, size=n_videos).tolist()
    tags_of = _group_lists(video_tag_pairs, n_videos)
    performers_of = _group_lists(video_performer_pairs, n_videos)
    title_words = {w: _capitalised(w) for w in (*(w for g in _GENRES for w in g[3]), *_NOISE_WORDS, *_GENERAL_TAGS)}
    genre_nouns = [g[0].lower() for g in _GENRES]
    genres = genre_of_video.tolist()
    makers = maker_of_video.tolist()
    minutes = (duration_s // 60).tolist()

    titles: list[str] = []
    descriptions: list[str] = []
    for i in range(n_videos):
        g = genres[i]
        t0, t1, t2 = (_GENRES[theme_genre[i][k]][3][theme_word[i][k]] for k in range(3))
        n0, n1, n2, n3, n4 = (_NOISE_WORDS[k] for k in noise[i])
        genre_tag = next((tag_names[t] for t in tags_of[i] if tag_genre[t] == g), t0)
        kind = template[i]
        if kind == 0:
            title = f"{title_words[t0]} {title_words[n0]}"
        elif kind == 1:
            title = f"The {title_words[n0]} of the {title_words[t0]}"
        elif kind == 2:
            title = f"{title_words[genre_tag]}: {title_words[n0]} {title_words[n1]}"
        elif kind == 3:
            title = f"{title_words[n0]} {title_words[t0]} Vol. {volume[i]}"
        elif t1 != t0:
            title = f"{title_words[t0]} and {title_words[t1]}"
        else:
            title = f"{title_words[n0]} {title_words[t0]}"
        titles.append(title)
        descriptions.append(
            f"A {_ADJECTIVES[adjective[i]]} {genre_nouns[g]} about {t1} and {t2}. "
            f"Set around {n1} and {n2}, with a \"{n3} {n4}\" twist.\n"
            f"Starring {', '.join(performer_names[p] for p in performers_of[i])}. "
            f"From {maker_names[makers[i]]}, {minutes[i]} minutes. "
            f"Tags: {', '.join(tag_names[t] for t in tags_of[i])}."
        )
    return titles, descriptions


def _group_lists(pairs: tuple[np.ndarray, np.ndarray], n_rows: int) -> list[list[int]]:
    rows, items = pairs
    order = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(n_rows + 1))
    sorted_items = items[order].tolist()
    return [sorted_items[bounds[i] : bounds[i + 1]] for i in range(n_rows)]


@dataclass
class _Users:
    """Hidden tastes: where each user starts, where they drift to, and how they react to price."""

    start_taste: np.ndarray
    end_taste: np.ndarray
    drift_midpoint: np.ndarray  # fraction of the like window
    drift_width: np.ndarray
    price_sensitivity: np.ndarray
    like_counts: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, size: DemoSize, catalogue: _Catalogue) -> _Users:
        n = size.users
        start = _tastes(rng, n, catalogue)
        # The end state keeps part of the start and adds newly found genres and names.
        keep = rng.beta(2.0, 2.5, size=n)[:, None]
        end = keep * start + (1.0 - keep) * _tastes(rng, n, catalogue)
        end *= np.linalg.norm(start, axis=1, keepdims=True) / np.linalg.norm(end, axis=1, keepdims=True)
        return cls(
            start_taste=start,
            end_taste=end,
            drift_midpoint=rng.uniform(0.2, 0.8, size=n),
            drift_width=rng.uniform(0.1, 0.5, size=n),
            price_sensitivity=rng.gamma(2.0, 0.3, size=n),
            like_counts=_like_counts(rng, size),
        )


def _tastes(rng: np.random.Generator, n: int, catalogue: _Catalogue) -> np.ndarray:
    """Sparse tastes: 1-3 favourite genres, and a few makers, performers and tags within them."""
    n_genres = len(_GENRES)
    genre_pull = np.bincount(catalogue.genre_of_video, minlength=n_genres) + 1.0
    key = 0.7 * np.log(genre_pull)[None, :] + rng.gumbel(size=(n, n_genres))
    rank = np.argsort(np.argsort(-key, axis=1), axis=1)
    n_favourites = rng.choice([1, 2, 3], size=n, p=[0.35, 0.4, 0.25])
    weights = np.where(rank < n_favourites[:, None], rng.gamma(2.0, 1.0, size=(n, n_genres)), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    genre_part = weights @ catalogue.genre_vectors

    def favourites(
        item_group: np.ndarray, item_weight: np.ndarray, vectors: np.ndarray, most: int, least: int
    ) -> np.ndarray:
        # Each slot: a favourite genre (by weight), then an item of that genre.
        cum = np.cumsum(weights, axis=1)
        slot_genre = (rng.random((n, most))[:, :, None] > cum[:, None, :]).sum(axis=2).clip(0, n_genres - 1)
        items = _draw_within_groups(rng, item_group, item_weight, slot_genre)
        count = rng.integers(least, most + 1, size=n)
        used = np.arange(most)[None, :] < count[:, None]
        return (vectors[items] * used[:, :, None]).sum(axis=1) / np.maximum(count, 1)[:, None]

    maker_part = favourites(catalogue.maker_home_genre, catalogue.maker_size, catalogue.maker_vectors, 2, 0)
    performer_part = favourites(
        catalogue.performer_genre, catalogue.performer_popularity, catalogue.performer_vectors, 3, 0
    )
    tag_part = favourites(catalogue.tag_genre, catalogue.tag_popularity, catalogue.tag_vectors, 3, 1)
    return (
        genre_part
        + 0.5 * maker_part
        + 0.5 * performer_part
        + 0.4 * tag_part
        + 0.35 * rng.normal(size=(n, LATENT_DIM)) / np.sqrt(LATENT_DIM)
    )


def _like_counts(rng: np.random.Generator, size: DemoSize) -> np.ndarray:
    """Heavy-tailed activity: at least 5 each, exactly ``size.likes`` in all, none above the cap."""
    cap = _user_like_cap(size)
    extra_total = size.likes - MIN_LIKES_PER_USER * size.users
    room = cap - MIN_LIKES_PER_USER
    activity = rng.lognormal(0.0, 1.3, size=size.users)
    share = np.zeros(size.users)
    free = np.ones(size.users, dtype=bool)
    remaining = float(extra_total)
    while remaining > 1e-9 and free.any():  # water-filling: capped users pass on their excess
        share[free] += remaining * activity[free] / activity[free].sum()
        over = share > room
        remaining = float((share[over] - room).sum())
        share[over] = room
        free &= ~over
    counts = np.floor(share).astype(np.int64)
    shortfall = extra_total - int(counts.sum())
    if shortfall:
        fraction = np.where(counts < room, share - counts, -1.0)
        counts[np.argsort(-fraction, kind="stable")[:shortfall]] += 1
    return MIN_LIKES_PER_USER + counts


def _draw_likes(
    rng: np.random.Generator, size: DemoSize, catalogue: _Catalogue, users: _Users, now_s: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each like: a time, the user's taste at that time, then a video not liked before.

    A like at time t comes from the user's start or end taste (the end taste more likely the
    later t is) and picks a video ∝ exp(taste·video + popularity − price sensitivity ×
    log price) among videos created before t. Videos are sorted by created_at, so "created
    before t" is a prefix, and one set of weights per user and taste serves every like.
    """
    n_videos = size.videos
    window_s = int(LIKE_WINDOW.total_seconds())
    like_user = np.repeat(np.arange(size.users), users.like_counts)
    like_s = now_s - window_s + rng.integers(0, window_s, size=size.likes)
    progress = (like_s - (now_s - window_s)) / window_s
    drift = _end_taste_share(progress, users.drift_midpoint[like_user], users.drift_width[like_user])
    like_taste = (rng.random(size.likes) < drift).astype(np.int64)  # 0 start, 1 end
    available = np.searchsorted(catalogue.created_s, like_s, side="left")
    if available.min() < 1:
        raise DemoDataError("some likes fall before the first video was created")

    # score = taste·vector + popularity − sensitivity·log(price) − bound, as one matrix
    # product. The bound (each part's largest possible value) keeps exp() from overflowing
    # without another pass over users × videos; padding videos up to whole blocks get -1e4.
    log_price = np.log(catalogue.price / _REFERENCE_PRICE_YEN)
    padded = -(-n_videos // _SAMPLING_BLOCK) * _SAMPLING_BLOCK
    video_side = np.zeros((padded, LATENT_DIM + 3), dtype=np.float32)
    video_side[:n_videos, :LATENT_DIM] = catalogue.vectors
    video_side[:, LATENT_DIM] = -1e4
    video_side[:n_videos, LATENT_DIM] = catalogue.popularity
    video_side[:n_videos, LATENT_DIM + 1] = log_price
    video_side[:, LATENT_DIM + 2] = 1.0
    tastes = TASTE_SHARPNESS * np.stack([users.start_taste, users.end_taste], axis=1).reshape(-1, LATENT_DIM)
    sensitivity = np.repeat(users.price_sensitivity, 2)
    bound = (
        np.linalg.norm(tastes, axis=1) * np.linalg.norm(catalogue.vectors, axis=1).max()
        + catalogue.popularity.max()
        + sensitivity * np.abs(log_price).max()
    )
    user_side = np.column_stack([tastes, np.ones(len(tastes)), -sensitivity, -bound]).astype(np.float32)

    like_video = np.empty(size.likes, dtype=np.int64)
    like_row = 2 * like_user + like_taste  # row of user_side: (user, start or end taste)
    user_start = np.concatenate([[0], np.cumsum(users.like_counts)])
    users_per_chunk = max(1, 8_000_000 // padded)
    for first in range(0, size.users, users_per_chunk):
        last = min(size.users, first + users_per_chunk)
        span = slice(user_start[first], user_start[last])
        needed, row = np.unique(like_row[span], return_inverse=True)
        weights = user_side[needed] @ video_side.T
        np.exp(weights, out=weights)
        like_video[span] = _sample_unliked(rng, weights, row, like_user[span], available[span])
    return like_user, like_video, like_s


def _end_taste_share(progress: np.ndarray, midpoint: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Chance that a like at ``progress`` (0 to 1 through the like window) comes from the end taste:
    0 before ``midpoint - width / 2``, 1 after ``midpoint + width / 2``, linear in between."""
    return np.clip((progress - midpoint) / width + 0.5, 0.0, 1.0)


def _sample_unliked(
    rng: np.random.Generator, weights: np.ndarray, row: np.ndarray, user: np.ndarray, available: np.ndarray
) -> np.ndarray:
    """Draw each like's video ∝ its row's weights over the first ``available`` videos,
    redrawing videos the user already has.

    Two levels (a block of videos, then a video in it) instead of a cumulative sum over every
    video: summing blocks is several times cheaper, and only drawn blocks are expanded.
    """
    n_rows, padded = weights.shape
    blocks = weights.reshape(n_rows, padded // _SAMPLING_BLOCK, _SAMPLING_BLOCK)
    block_cum = np.zeros((n_rows, blocks.shape[1] + 1))
    np.cumsum(blocks.sum(axis=2), axis=1, out=block_cum[:, 1:])
    position = np.arange(_SAMPLING_BLOCK)
    full = available // _SAMPLING_BLOCK  # blocks that existed entirely before the like
    part = available % _SAMPLING_BLOCK  # videos of the next block that did
    full_mass = block_cum[row, full]
    tail = blocks[row, np.minimum(full, blocks.shape[1] - 1)]
    mass = full_mass + np.where(position < part[:, None], tail, 0.0).sum(axis=1, dtype=np.float64)
    if (mass <= 0).any():
        raise DemoDataError("a user's taste gives every available video zero weight")

    video = np.full(len(row), -1, dtype=np.int64)
    taken = np.empty(0, dtype=np.int64)
    pending = np.arange(len(row))
    n_videos = padded
    for attempt in range(200):
        if len(pending) == 0:
            return video
        r, u = row[pending], rng.random(len(pending))
        if attempt < 100:
            target = u * mass[pending]
            in_tail = (target >= full_mass[pending]) & (part[pending] > 0)
            block = np.where(in_tail, full[pending], _last_at_most(block_cum, r, target, full[pending]))
            limit = np.where(in_tail, part[pending], _SAMPLING_BLOCK)
            inside = blocks[r, np.minimum(block, blocks.shape[1] - 1)]
            inside = np.where(position < limit[:, None], inside, 0.0)
            residual = target - block_cum[r, block]
            step = (np.cumsum(inside, axis=1, dtype=np.float64) <= residual[:, None]).sum(axis=1)
            choice = block * _SAMPLING_BLOCK + np.minimum(step, limit - 1)
        else:  # a user who has nearly exhausted their taste: any unliked video will do
            choice = (u * available[pending]).astype(np.int64)
        key = user[pending] * n_videos + choice
        _, first_seen = np.unique(key, return_index=True)
        once = np.zeros(len(pending), dtype=bool)
        once[first_seen] = True
        accepted = once & ~np.isin(key, taken)
        video[pending[accepted]] = choice[accepted]
        taken = np.union1d(taken, key[accepted])
        pending = pending[~accepted]
    raise DemoDataError("could not find enough distinct videos for every user; ask for fewer likes")


def _last_at_most(cum: np.ndarray, row: np.ndarray, target: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per entry, the largest b < end with cum[row, b] <= target (a row-wise binary search)."""
    low, high = np.zeros_like(end), np.maximum(end, 1)
    while (high - low > 1).any():
        middle = (low + high) // 2
        go = cum[row, middle] <= target
        low, high = np.where(go, middle, low), np.where(go, high, middle)
    return low


@dataclass
class _Profiles:
    """Who filled in a profile, and what they entered (-1 where they left a field empty)."""

    user: np.ndarray  # user index of each profile row, in created_at order
    age_range: np.ndarray  # index into AGE_RANGES, or -1
    region: np.ndarray  # index into REGIONS, or -1
    created_s: np.ndarray

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        size: DemoSize,
        catalogue: _Catalogue,
        users: _Users,
        like_user: np.ndarray,
        like_s: np.ndarray,
        now_s: int,
    ) -> _Profiles:
        """Age from the taste's projection on the genres' age axis plus noise; region ∝ its
        population share, tilted towards users who like its local makers."""
        n = size.users
        taste = users.start_taste

        # Age: rank users by a noisy age score and cut the ranking at the age ranges' shares.
        lean = np.array([_GENRE_AGE_LEAN.get(g[0], 0.0) for g in _GENRES])
        along_age = _standardised(taste @ (lean @ catalogue.genre_vectors))
        score = AGE_TASTE_CORRELATION * along_age + np.sqrt(1.0 - AGE_TASTE_CORRELATION**2) * rng.normal(size=n)
        cut = np.floor(np.cumsum(_AGE_RANGE_SHARE)[:-1] * n).astype(np.int64)
        age_range = np.searchsorted(cut, np.argsort(np.argsort(score)), side="right")

        # Region: each has a few local makers (the bigger ones more likely); a user's log-odds
        # for a region rise with their affinity to its makers, relative to other users.
        n_makers = len(catalogue.maker_names)
        maker_order = _weighted_order(rng, catalogue.maker_size)
        n_local = len(REGIONS) * REGION_LOCAL_MAKERS
        local = maker_order[np.arange(n_local) % n_makers].reshape(len(REGIONS), REGION_LOCAL_MAKERS)
        affinity = taste @ catalogue.maker_vectors[local].mean(axis=1).T  # users × regions
        logit = np.log(_REGION_SHARE)[None, :] + REGION_TASTE_PULL * _standardised(affinity)
        region = (rng.gumbel(size=(n, len(REGIONS))) + logit).argmax(axis=1)

        # Who has a profile, and which rows left age range, region or both empty.
        user = np.sort(rng.permutation(n)[: int(round(PROFILE_SHARE * n))])
        n_rows = len(user)
        age_range, region = age_range[user], region[user]
        gaps = rng.permutation(n_rows)[: int(round(PROFILE_MISSING_SHARE * n_rows))]
        gap_kind = rng.choice(3, size=len(gaps), p=[0.4, 0.4, 0.2])  # age, region, both
        age_range[gaps[gap_kind != 1]] = -1
        region[gaps[gap_kind != 0]] = -1

        # Signed up before their first like: days to months before, never before the catalogue.
        first_like_s = np.full(n, now_s, dtype=np.int64)
        np.minimum.at(first_like_s, like_user, like_s)
        lead_s = 3600 + rng.exponential(90 * 86_400, size=n_rows)
        created_s = np.maximum(
            first_like_s[user] - lead_s.astype(np.int64), now_s - int(CATALOGUE_SPAN.total_seconds())
        )
        order = np.lexsort((user, created_s))
        return cls(user=user[order], age_range=age_range[order], region=region[order], created_s=created_s[order])


def _standardised(x: np.ndarray) -> np.ndarray:
    """Per column: zero mean, unit standard deviation (constant columns become zero)."""
    centred = x - x.mean(axis=0)
    return centred / np.maximum(x.std(axis=0), 1e-12)


def _weighted_order(rng: np.random.Generator, weight: np.ndarray) -> np.ndarray:
    """All items in a random order, heavier ones likelier first (sampling without replacement)."""
    return np.argsort(rng.exponential(size=len(weight)) / weight, kind="stable")


def _uuid_strings(rng: np.random.Generator, n: int) -> list[str]:
    """Random (version 4) UUIDs drawn from the seeded generator, so ids are reproducible."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = raw.tobytes().hex()
    return [
        f"{hexed[i:i + 8]}-{hexed[i + 8:i + 12]}-{hexed[i + 12:i + 16]}-{hexed[i + 16:i + 20]}-{hexed[i + 20:i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def _frames(
    rng: np.random.Generator,
    size: DemoSize,
    catalogue: _Catalogue,
    users: _Users,
    like_user: np.ndarray,
    like_video: np.ndarray,
    like_s: np.ndarray,
    profiles: _Profiles,
    now_s: int,
) -> DemoData:
    video_ids = np.array(_uuid_strings(rng, size.videos), dtype=object)
    tag_ids = np.array(_uuid_strings(rng, len(catalogue.tag_names)), dtype=object)
    performer_ids = np.array(_uuid_strings(rng, len(catalogue.performer_names)), dtype=object)
    user_ids = np.array(_uuid_strings(rng, size.users), dtype=object)
    like_ids = np.array(_uuid_strings(rng, size.likes), dtype=object)

    videos = pd.DataFrame(
        {
            "id": video_ids,
            "title": catalogue.titles,
            "description": catalogue.descriptions,
            "genre": np.array([g[0] for g in _GENRES], dtype=object)[catalogue.genre_of_video],
            "maker": np.array(catalogue.maker_names, dtype=object)[catalogue.maker_of_video],
            "price": catalogue.price.astype(np.float64),
            "duration_seconds": catalogue.duration_s.astype(np.int64),
            "created_at": pd.to_datetime(catalogue.created_s, unit="s", utc=True),
        }
    )
    tag_rows, tag_items = catalogue.video_tag_pairs
    performer_rows, performer_items = catalogue.video_performer_pairs
    order = np.lexsort((like_video, like_user, like_s))  # by time, as the app would have written them
    likes = pd.DataFrame(
        {
            "id": like_ids,
            "user_id": user_ids[like_user[order]],
            "video_id": video_ids[like_video[order]],
            "created_at": pd.to_datetime(like_s[order], unit="s", utc=True),
        }
    )
    return DemoData(
        videos=videos,
        tags=pd.DataFrame({"id": tag_ids, "name": catalogue.tag_names}),
        video_tags=pd.DataFrame({"video_id": video_ids[tag_rows], "tag_id": tag_ids[tag_items]}),
        performers=pd.DataFrame({"id": performer_ids, "name": catalogue.performer_names}),
        video_performers=pd.DataFrame(
            {"video_id": video_ids[performer_rows], "performer_id": performer_ids[performer_items]}
        ),
        likes=likes,
        profiles=pd.DataFrame(
            {
                "id": user_ids[profiles.user],
                "age_range": _labels(AGE_RANGES, profiles.age_range),
                "region": _labels(REGIONS, profiles.region),
                "created_at": pd.to_datetime(profiles.created_s, unit="s", utc=True),
            }
        ),
        truth=DemoTruth(
            user_ids=user_ids,
            video_ids=video_ids,
            start_taste=users.start_taste,
            end_taste=users.end_taste,
            drift_midpoint=users.drift_midpoint,
            drift_width=users.drift_width,
            price_sensitivity=users.price_sensitivity,
            video_vectors=catalogue.vectors,
            popularity=catalogue.popularity,
            log_relative_price=np.log(catalogue.price / _REFERENCE_PRICE_YEN),
            created_s=catalogue.created_s.astype(np.int64),
            window_start_s=now_s - int(LIKE_WINDOW.total_seconds()),
            window_s=int(LIKE_WINDOW.total_seconds()),
        ),
    )


def _labels(names: tuple[str, ...], index: np.ndarray) -> np.ndarray:
    """Names for indices, None (NULL) where the index is -1."""
    return np.array([*names, None], dtype=object)[index]


# -- hidden truth --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DemoTruth:
    """The hidden values the likes were drawn from, users and videos in the generator's order.

    ``video_ids`` is in the videos frame's row order (oldest first); ``user_ids`` in the order
    the generator numbered users. A like of user u at time t came from u's end taste with
    probability :meth:`end_taste_share`, else from the start taste, and then picked a video
    ∝ exp(sharpness · taste·vector + popularity − price_sensitivity · log_relative_price)
    among the videos created before t that u had not liked.
    """

    user_ids: np.ndarray
    video_ids: np.ndarray
    start_taste: np.ndarray  # users × LATENT_DIM
    end_taste: np.ndarray  # users × LATENT_DIM
    drift_midpoint: np.ndarray  # per user, as a fraction of the like window
    drift_width: np.ndarray  # per user, as a fraction of the like window
    price_sensitivity: np.ndarray  # per user
    video_vectors: np.ndarray  # videos × LATENT_DIM
    popularity: np.ndarray  # per video, log-weight
    log_relative_price: np.ndarray  # per video, log(price / reference price)
    created_s: np.ndarray  # per video, epoch seconds (ascending)
    window_start_s: int
    window_s: int
    sharpness: float = TASTE_SHARPNESS

    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        return _rows_of(self.user_ids, user_ids, "user")

    def video_rows(self, video_ids: Sequence[str]) -> np.ndarray:
        return _rows_of(self.video_ids, video_ids, "video")

    def end_taste_share(self, user_rows: np.ndarray, at_seconds: np.ndarray) -> np.ndarray:
        """Probability that a like of each user at each time was drawn from the end taste."""
        progress = (np.asarray(at_seconds, dtype=np.float64) - self.window_start_s) / self.window_s
        return _end_taste_share(progress, self.drift_midpoint[user_rows], self.drift_width[user_rows])


def _rows_of(known: np.ndarray, wanted: Sequence[str], what: str) -> np.ndarray:
    rows = pd.Index(known).get_indexer(pd.Index(np.asarray(wanted, dtype=object)))
    if (rows < 0).any():
        missing = np.asarray(wanted, dtype=object)[rows < 0][:3]
        raise DemoDataError(f"unknown {what} id(s) {', '.join(map(str, missing))} (not in this demo data)")
    return rows


_ORACLE_CELLS = 2_000_000
"""Queries × videos scored at once by oracle_scores (a few arrays of this many float64s)."""


def oracle_scores(
    truth: DemoTruth,
    user_ids: Sequence[str],
    at_seconds: Sequence[float] | np.ndarray,
    candidate_video_ids: Sequence[str],
    exclude: Sequence[Sequence[str]] | None = None,
) -> np.ndarray:
    """log P(next like = video | user, time) under the generator, [queries, candidates], float64.

    Query i is (``user_ids[i]``, ``at_seconds[i]``). The generator draws a like at time t by first
    picking a taste (end with probability p = ``truth.end_taste_share``, else start), then a
    video ∝ exp(a_taste(video)) among the videos created before t, where
    a = sharpness · taste·vector + popularity − price_sensitivity · log relative price. So the
    probability of a video is the mixture of the two *normalised* softmaxes,

        P(v) = (1 − p) · exp(a_start(v)) / Z_start(t) + p · exp(a_end(v)) / Z_end(t),

    with Z over the videos available at t, and this returns log P(v) (the exact log-probability,
    so in particular right up to a per-query constant). Not the log of the mixed raw numerators:
    each taste's softmax has its own normaliser, and mixing numerators would weight the tastes by
    Z instead of by (1 − p, p). Not the expected log either (a geometric mixture): where the two
    tastes disagree it would rank a video one taste loves below what the generator does.

    Videos created at or after t get -inf. ``exclude`` (per query, video ids the user already
    liked) also gets -inf and leaves both normalisers, as the generator redraws (within the same
    taste) a video the user already has. Without it the scores sum (as probabilities) to 1 over
    the available catalogue. Work is chunked so memory stays at a few ``_ORACLE_CELLS`` arrays
    plus the [queries, candidates] result.
    """
    users = truth.user_rows(user_ids)
    at = np.asarray(at_seconds, dtype=np.float64).reshape(-1)
    if len(at) != len(users):
        raise DemoDataError(f"{len(users)} users but {len(at)} times")
    if exclude is not None and len(exclude) != len(users):
        raise DemoDataError(f"{len(users)} users but {len(exclude)} exclude lists")
    candidates = truth.video_rows(candidate_video_ids)
    n_videos = len(truth.video_ids)
    available = np.searchsorted(truth.created_s, at, side="left")  # videos created strictly before t
    end_share = truth.end_taste_share(users, at)
    # a_taste = [sharpness · taste, 1, −sensitivity] · [vector, popularity, log relative price]
    video_side = np.column_stack([truth.video_vectors, truth.popularity, truth.log_relative_price])
    column = np.arange(n_videos)

    out = np.empty((len(users), len(candidates)), dtype=np.float64)
    step = max(1, _ORACLE_CELLS // max(n_videos, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for first in range(0, len(users), step):
            span = slice(first, min(first + step, len(users)))
            u = users[span]
            blocked = column[None, :] >= available[span, None]
            if exclude is not None:
                for i, liked in enumerate(exclude[span]):
                    if len(liked):
                        blocked[i, truth.video_rows(liked)] = True
            mixed = np.full((len(u), n_videos), -np.inf)
            for taste, weight in ((truth.start_taste, 1.0 - end_share[span]), (truth.end_taste, end_share[span])):
                user_side = np.column_stack(
                    [truth.sharpness * taste[u], np.ones(len(u)), -truth.price_sensitivity[u]]
                )
                a = user_side @ video_side.T
                a[blocked] = -np.inf
                top = a.max(axis=1, keepdims=True)
                top[~np.isfinite(top)] = 0.0
                log_z = np.log(np.exp(a - top).sum(axis=1, keepdims=True)) + top
                np.logaddexp(mixed, np.log(weight)[:, None] + a - log_z, out=mixed)
            mixed[np.isnan(mixed)] = -np.inf  # nothing available yet: 0 / 0
            out[span] = mixed[:, candidates]
    return out


# -- loading -------------------------------------------------------------------------------


def load_demo_data(conn: psycopg.Connection, data: DemoData, *, replace: bool = False) -> dict[str, int]:
    """COPY the frames into the seven app tables in one transaction; return rows per table.

    Tables that already hold rows are refused unless ``replace``, which empties exactly
    these seven tables (profiles included) first. Nothing else is written. With a
    transaction already open on ``conn`` this runs in a savepoint and the caller commits.
    """
    with conn.transaction():
        existing = _existing_rows(conn)
        if existing and not replace:
            found = ", ".join(f"{table} has {rows} row{'s' * (rows != 1)}" for table, rows in existing.items())
            raise DemoDataError(
                f"the demo tables are not empty ({found}); pass --reset to replace the rows of "
                f"{', '.join(DEMO_TABLES)}"
            )
        if replace:
            _empty_demo_tables(conn)
        counts = {}
        for table, columns in _TABLE_COLUMNS.items():
            counts[table] = _copy_frame(conn, table, columns, getattr(data, table))
        for table in DEMO_TABLES:
            conn.execute(sql.SQL("analyze public.{}").format(sql.Identifier(table)))
    return counts


def _existing_rows(conn: psycopg.Connection) -> dict[str, int]:
    missing = [
        t for t in DEMO_TABLES if conn.execute("select to_regclass(%s)", (f"public.{t}",)).fetchone()[0] is None
    ]
    if missing:
        raise DemoDataError(f"table(s) {', '.join(missing)} do not exist; apply the migrations first")
    existing = {}
    for table in DEMO_TABLES:
        table_sql = sql.Identifier(table)
        if conn.execute(sql.SQL("select exists (select 1 from public.{})").format(table_sql)).fetchone()[0]:
            existing[table] = conn.execute(sql.SQL("select count(*) from public.{}").format(table_sql)).fetchone()[0]
    return existing


def _empty_demo_tables(conn: psycopg.Connection) -> None:
    """TRUNCATE the seven tables; DELETE where a table outside them keeps a foreign key to one.

    PostgreSQL refuses to TRUNCATE a table referenced from another table (video_embeddings
    references videos) unless that table is truncated too. Those referencing tables must be
    empty (else their rows would go with the demo rows) and are locked against writes
    until the load commits; the referenced demo tables are then emptied with DELETE.
    """
    outside = conn.execute(
        """
        select c.conrelid::regclass::text, c.confrelid::regclass::text
        from pg_constraint c
        where c.contype = 'f'
          and c.confrelid = any(%(ours)s::regclass[])
          and c.conrelid <> all(%(ours)s::regclass[])
        """,
        {"ours": [f"public.{t}" for t in DEMO_TABLES]},
    ).fetchall()
    referenced = set()
    for referencing, target in outside:
        conn.execute(sql.SQL("lock table {} in share mode").format(sql.SQL(referencing)))
        rows = conn.execute(sql.SQL("select count(*) from {}").format(sql.SQL(referencing))).fetchone()[0]
        if rows:
            raise DemoDataError(
                f"table {referencing} has {rows} rows that reference {target}; replacing the demo "
                f"data would delete them, so empty {referencing} first"
            )
        referenced.add(target.removeprefix("public."))
    truncatable = [t for t in DEMO_TABLES if t not in referenced]
    conn.execute(
        sql.SQL("truncate table {}").format(
            sql.SQL(", ").join(sql.Identifier("public", t) for t in truncatable)
        )
    )
    for table in DEMO_TABLES:
        if table in referenced:
            conn.execute(sql.SQL("delete from {}").format(sql.Identifier("public", table)))


def _copy_frame(conn: psycopg.Connection, table: str, columns: tuple[str, ...], frame: pd.DataFrame) -> int:
    """COPY a frame as CSV, in chunks so a million likes never become one huge string."""
    statement = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        sql.Identifier("public", table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    # Timestamps as ISO text up front: pandas' per-value date formatting is the slow part.
    frame = frame.assign(
        **{
            column: np.char.add(
                np.datetime_as_string(frame[column].dt.tz_convert(None).to_numpy().astype("datetime64[us]")), "Z"
            )
            for column in columns
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype)
        }
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for start in range(0, len(frame), _COPY_CHUNK_ROWS):
            buffer = io.StringIO()
            chunk = frame.iloc[start : start + _COPY_CHUNK_ROWS]
            chunk.to_csv(buffer, columns=list(columns), header=False, index=False)
            copy.write(buffer.getvalue().encode("utf-8"))
    return len(frame)
