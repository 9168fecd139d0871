"""The English words the catalogue is written in, kept apart from the code that arranges them.

Everything a reader sees in the demo catalogue (genre names, tags, titles, descriptions, makers,
performers) comes from one ``WordPools``; the generator only draws indices into it. A Japanese
(or any other) variant is another ``WordPools`` of the same shape: the same genre keys, ten theme
words per genre, templates with the same fields, pools of the same sizes (a draw's size is the
pool's). No draw depends on the words, so another pool changes the text and nothing else:
``words_ja.JAPANESE`` is the Japanese one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WordPools:
    genre_names: dict[str, str]
    """Genre key (``catalogue.GENRES``) to the name stored in ``videos.genre``."""
    genre_themes: dict[str, tuple[str, ...]]
    """Ten theme words per genre key: the genre's tags, and what its titles and descriptions are about."""
    general_tags: tuple[str, ...]
    """Tags any genre can carry: format, tone and editorial labels."""
    noise_words: tuple[str, ...]
    """Words of no genre, mixed into titles and descriptions so that text is a noisy signal."""
    adjectives: tuple[str, ...]
    maker_first: tuple[str, ...]
    maker_second: tuple[str, ...]
    maker_suffix: tuple[str, ...]
    given_name_syllables: tuple[str, ...]
    given_name_endings: tuple[str, ...]
    family_names: tuple[str, ...]
    title_templates: tuple[str, ...]
    """Fields {theme}, {theme2}, {noise}, {noise2}, {genre_tag} (words in title case) and {volume}."""
    title_without_theme2: str
    """Used instead of a template with {theme2} when the two theme words are the same."""
    description_template: str
    """Fields {adjective}, {genre} (the genre's name as a noun), {theme2}, {theme3}, {noise2} to
    {noise5}, {performers}, {maker}, {minutes} and {tags}."""
    title_case: Callable[[str], str]
    genre_noun: Callable[[str], str]
    list_separator: str
    maker_separator: str = " "
    """Between a maker name's three parts (Japanese writes them together)."""
    performer_format: str = "{given} {family}"
    given_name_case: Callable[[str], str] = str.capitalize
    spelling_variants: bool = False
    """Whether some rows store a name or a title in another width or case (``variants``), as a
    Japanese catalogue filled in by hand does: 「ﾄﾞﾗﾏ」 for 「ドラマ」, 「ＨＤ」 for 「HD」."""

    def maker_name(self, first: int, second: int, suffix: int) -> str:
        return self.maker_separator.join(
            (self.maker_first[first], self.maker_second[second], self.maker_suffix[suffix]))

    def performer_name(self, syllable_a: int, syllable_b: int, ending: int, family: int) -> str:
        given = self.given_name_syllables[syllable_a] + self.given_name_syllables[syllable_b]
        return self.performer_format.format(given=self.given_name_case(given + self.given_name_endings[ending]),
                                            family=self.family_names[family])


def _capitalised(words: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in words.split(" "))


ENGLISH = WordPools(
    genre_names={
        "Drama": "Drama", "Comedy": "Comedy", "Romance": "Romance", "Action": "Action", "Thriller": "Thriller",
        "Anime": "Anime", "Documentary": "Documentary", "Horror": "Horror", "Cooking": "Cooking",
        "Music": "Music", "Mystery": "Mystery", "Science Fiction": "Science Fiction", "Travel": "Travel",
        "Fantasy": "Fantasy", "Crime": "Crime", "Sports": "Sports", "Fitness": "Fitness", "Nature": "Nature",
        "Family": "Family", "History": "History", "Gaming": "Gaming", "Dance": "Dance", "Fashion": "Fashion",
        "Education": "Education",
    },
    genre_themes={
        "Drama": (
            "family secrets", "reunion", "betrayal", "inheritance", "hometown", "letters", "forgiveness",
            "rivalry", "courtroom", "grief",
        ),
        "Comedy": (
            "prank", "roommates", "wedding", "sitcom", "parody", "stand-up", "misadventure", "blunder",
            "sketch", "farce",
        ),
        "Romance": (
            "first love", "summer fling", "long distance", "proposal", "heartbreak", "blind date",
            "office romance", "love triangle", "second chance", "soulmates",
        ),
        "Action": (
            "heist", "car chase", "martial arts", "mercenary", "explosion", "rescue mission", "showdown",
            "bodyguard", "shootout", "stunts",
        ),
        "Thriller": (
            "conspiracy", "hostage", "stalker", "double agent", "cover-up", "manhunt", "blackmail", "paranoia",
            "ransom", "escape",
        ),
        "Anime": (
            "mecha", "isekai", "shonen", "magical girl", "slice of life", "idol", "school club", "cel shaded",
            "light novel", "chibi",
        ),
        "Documentary": (
            "interview", "investigation", "archival footage", "biography", "expose", "true story",
            "field report", "eyewitness", "profile", "whistleblower",
        ),
        "Horror": (
            "haunted house", "zombie", "possession", "slasher", "curse", "ghost", "creature", "cult",
            "nightmare", "seance",
        ),
        "Cooking": (
            "ramen", "sushi", "baking", "street food", "knife skills", "dessert", "barbecue", "vegan recipes",
            "home cooking", "bento",
        ),
        "Music": (
            "concert", "live session", "acoustic", "orchestra", "jazz", "hip hop", "rehearsal", "songwriter",
            "music video", "karaoke",
        ),
        "Mystery": (
            "detective", "whodunit", "missing person", "locked room", "clue", "alibi", "cold case",
            "amateur sleuth", "puzzle", "riddle",
        ),
        "Science Fiction": (
            "spaceship", "time travel", "android", "alien contact", "dystopia", "cyberpunk", "terraforming",
            "clone", "wormhole", "robot uprising",
        ),
        "Travel": (
            "backpacking", "road trip", "hot springs", "city walk", "island hopping", "train journey",
            "mountain village", "night market", "castle tour", "camping",
        ),
        "Fantasy": (
            "dragon", "wizard", "enchanted forest", "quest", "sword", "fairy", "kingdom", "prophecy", "sorcery",
            "elves",
        ),
        "Crime": (
            "yakuza", "gangster", "mafia", "undercover cop", "prison", "smuggling", "cartel", "fraud", "hitman",
            "police procedural",
        ),
        "Sports": (
            "baseball", "soccer", "marathon", "boxing", "tennis", "basketball", "sumo", "cycling", "golf",
            "highlights",
        ),
        "Fitness": (
            "yoga", "pilates", "interval training", "stretching", "weight training", "running form",
            "home workout", "meditation", "core training", "posture",
        ),
        "Nature": (
            "wildlife", "ocean", "rainforest", "birdwatching", "volcano", "coral reef", "migration", "glacier",
            "insects", "national park",
        ),
        "Family": (
            "kids", "parenting", "pets", "holiday", "grandparents", "siblings", "picnic", "birthday",
            "adoption", "school days",
        ),
        "History": (
            "samurai", "world war", "ancient rome", "edo period", "archaeology", "dynasty", "revolution",
            "medieval", "empire", "civil war",
        ),
        "Gaming": (
            "speedrun", "let's play", "esports", "walkthrough", "retro games", "strategy games", "rpg",
            "fighting games", "tournament", "game review",
        ),
        "Dance": (
            "ballet", "street dance", "choreography", "tango", "breakdance", "salsa", "tap dance",
            "contemporary dance", "dance battle", "ballroom",
        ),
        "Fashion": (
            "runway", "street style", "makeup", "styling", "vintage clothing", "haute couture", "hair styling",
            "modeling", "lookbook", "skincare",
        ),
        "Education": (
            "lecture", "tutorial", "language learning", "mathematics", "physics", "coding", "exam prep",
            "study with me", "science experiment", "economics",
        ),
    },
    general_tags=(
        "HD", "4K", "subtitled", "dubbed", "short", "feature length", "series", "new release", "classic",
        "award winner", "exclusive", "remastered", "director's cut", "behind the scenes", "limited release",
        "staff pick", "trending", "indie", "blockbuster", "black and white", "widescreen", "slow paced",
        "fast paced", "dialogue heavy", "no dialogue", "ensemble cast", "debut", "veteran cast", "sequel",
        "prequel", "remake", "pilot episode", "season finale", "bonus content", "extended edition",
        "soundtrack", "original story", "adaptation", "cult classic", "crowd pleaser", "hidden gem",
        "late night", "weekend watch", "binge-worthy", "feel-good", "dark", "uplifting", "relaxing", "intense",
        "emotional", "funny", "nostalgic", "mature", "all ages", "bilingual", "vertical video", "first person",
        "documentary style", "true crime", "slow cinema",
    ),
    noise_words=(
        "night", "city", "summer", "winter", "letter", "promise", "journey", "secret", "morning", "river",
        "light", "shadow", "road", "home", "story", "memory", "dream", "window", "garden", "station", "bridge",
        "season", "weekend", "signal", "echo", "voice", "mirror", "island", "harbor", "street", "rain", "snow",
        "fire", "glass", "paper", "silver", "golden", "blue", "red", "quiet", "last", "first", "little", "long",
        "hidden", "open", "broken", "lucky", "wild", "late",
    ),
    adjectives=(
        "gripping", "gentle", "bold", "quiet", "surprising", "heartfelt", "sharp", "playful", "moody",
        "sweeping", "intimate", "lively", "raw", "polished", "offbeat", "tender",
    ),
    maker_first=(
        "Blue", "Red", "Golden", "Silver", "Crimson", "Green", "Northern", "Eastern", "Western", "Southern",
        "Bright", "Silent", "Rising", "Midnight", "Morning", "Wild", "Iron", "Crystal", "Paper", "Velvet",
        "Lucky", "Hidden", "Open", "Little", "Grand", "Royal", "Urban", "Coastal", "Lunar", "Solar", "Amber",
        "Scarlet", "Jade", "Cobalt", "Ivory", "Maple", "Cedar", "Willow", "Sakura", "Neon",
    ),
    maker_second=(
        "Harbor", "Lantern", "Fox", "Crane", "River", "Mountain", "Bridge", "Garden", "Tower", "Island",
        "Comet", "Arrow", "Anchor", "Falcon", "Lotus", "Owl", "Tiger", "Wave", "Forest", "Gate", "Star", "Moon",
        "Sun", "Cloud", "Stone", "Frame", "Reel", "Lens", "Stage", "Screen", "Door", "Window", "Road", "Field",
        "Valley", "Bay", "Peak", "Canyon", "Meadow", "Orchard",
    ),
    maker_suffix=(
        "Pictures", "Studios", "Films", "Media", "Productions", "Works", "Entertainment", "Visual",
    ),
    given_name_syllables=(
        "a", "ka", "sa", "ta", "na", "ha", "ma", "ya", "ra", "ki", "shi", "chi", "mi", "ri", "yu", "ku", "su",
        "ho", "mo", "yo", "ko", "to", "no", "ne", "e", "hi", "sho", "ryo", "aki", "ren",
    ),
    given_name_endings=(
        "", "ko", "mi", "na", "ka", "ri", "ya", "to", "ki", "ne",
    ),
    family_names=(
        "Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura", "Kobayashi", "Kato",
        "Yoshida", "Yamada", "Sasaki", "Yamaguchi", "Matsumoto", "Inoue", "Kimura", "Hayashi", "Shimizu",
        "Yamazaki", "Mori", "Abe", "Ikeda", "Hashimoto", "Yamashita", "Ishikawa", "Nakajima", "Maeda", "Fujita",
        "Ogawa", "Goto", "Okada", "Hasegawa", "Murakami", "Kondo", "Ishii", "Saito", "Sakamoto", "Endo", "Aoki",
        "Fujii", "Nishimura", "Fukuda", "Ota", "Miura", "Fujiwara", "Okamoto", "Matsuda", "Nakagawa", "Nakano",
        "Harada", "Ono", "Tamura", "Takeuchi", "Kaneko", "Wada", "Nakayama", "Ishida", "Ueda", "Morita", "Hara",
        "Shibata", "Sakai", "Kudo", "Yokoyama", "Miyazaki", "Miyamoto", "Uchida", "Takagi", "Ando", "Taniguchi",
        "Ohno", "Maruyama", "Imai", "Takada", "Fujimoto", "Takeda", "Murata", "Ueno", "Sugiyama", "Masuda",
        "Sugawara", "Hirano", "Otsuka", "Chiba", "Kubo", "Matsui", "Iwasaki", "Sakurai", "Kinoshita", "Noguchi",
        "Matsuo", "Nomura", "Kikuchi", "Sano", "Onishi", "Sugimoto", "Arai", "Hamada", "Ichikawa",
    ),
    title_templates=(
        "{theme} {noise}",
        "The {noise} of the {theme}",
        "{genre_tag}: {noise} {noise2}",
        "{noise} {theme} Vol. {volume}",
        "{theme} and {theme2}",
    ),
    title_without_theme2="{noise} {theme}",
    description_template=(
        "A {adjective} {genre} about {theme2} and {theme3}. "
        'Set around {noise2} and {noise3}, with a "{noise4} {noise5}" twist.\n'
        "Starring {performers}. "
        "From {maker}, {minutes} minutes. "
        "Tags: {tags}."
    ),
    title_case=_capitalised,
    genre_noun=str.lower,
    list_separator=", ",
)
"""The pools the demo data is written in."""
