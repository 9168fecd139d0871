"""A Japanese catalogue: one normalisation of names and text (NFKC, lower case) in the pipeline and
in the Edge Functions, text terms that work for Japanese and English in one catalogue, older
feature specs served as they were trained, and a full weekly run on the Japanese demo data."""

from __future__ import annotations

import functools
import json
import random
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from twotower_pipeline import db, vector_store
from twotower_pipeline.demo_data import generate_demo_data, tiny_demo_size
from twotower_pipeline.demo_data.variants import full_width, half_width_katakana, spellings
from twotower_pipeline.model.features import (
    LEGACY_NAME_NORMALISATION,
    LEGACY_TEXT_TOKENIZER,
    NAME_NORMALISATION,
    OOV,
    TEXT_TOKENIZER,
    FeatureConfig,
    FeatureSpec,
    Vocabulary,
    fit_feature_spec,
    item_features,
    normalise_name,
    normalise_text,
    text_terms,
)
from twotower_pipeline.publishing import load_version
from twotower_pipeline.validation import QualityRules, prepare_training_data
from twotower_pipeline_tests.conftest import PUBLISHABLE, QUICK, new_database, published_pipeline
from twotower_pipeline_tests.test_edge_functions import FUNCTIONS, deno_env, explain, run, tool
from twotower_pipeline_tests.test_validation import NOW as VALIDATION_NOW
from twotower_pipeline_tests.test_validation import _catalogue as _validation_catalogue
from twotower_pipeline_tests.test_validation import _likes as _validation_likes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# Strings on which a normalisation is easy to get subtly wrong, with what the rule makes of them.
TRICKY = {
    "ＶＯＬ．２": "vol.2",
    "Vol.2": "vol.2",
    "ｶﾀｶﾅ": "カタカナ",
    "ﾄﾞﾗﾏ": "ドラマ",
    "ﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ": "パピプペポ",
    "か\u3099": "が",  # a kana and a separate voicing mark
    "佐藤\u3000亜香子": "佐藤 亜香子",  # ideographic space
    "GRAND港ﾋﾟｸﾁｬｰｽﾞ": "grand港ピクチャーズ",
    "㈱ＮＥＯＮ": "(株)neon",
    "①②": "12",
    "Ⅻ": "xii",
    "ﬁlm": "film",
    "Straße": "straße",  # lower case, not case folding: the same in JavaScript
    "ẞ": "ß",
    "ΟΔΟΣ": "οδος",  # final sigma
    "İstanbul": "i\u0307stanbul",
    "Å": "å",  # the angstrom sign
    "a\u200bb\u202ec\ufeffd\u00ade": "abcde",  # zero-width space, bidi override, BOM, soft hyphen
    "葛\U000e0100飾": "葛飾",  # ideographic variation selector
    "❤\ufe0f": "❤",
    "a\x00b\tc\n\nd\x85e": "a b c d e",  # control characters
    " \u3000 ": "",
    "": "",
}


# -- normalisation --------------------------------------------------------------------------------

def test_names_normalise_to_one_spelling_and_the_rule_is_stable():
    for raw, expected in TRICKY.items():
        assert normalise_name(raw) == expected, raw
        assert normalise_name(expected) == expected, expected
    assert normalise_name is normalise_text or normalise_name("ＡＢ") == normalise_text("ＡＢ")
    # Stable on every character: normalising twice is normalising once.
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF or unicodedata.category(chr(cp)) == "Cn":
            continue
        once = normalise_name(chr(cp))
        assert normalise_name(once) == once, hex(cp)


def test_every_spelling_variant_of_the_demo_normalises_to_its_original():
    assert full_width("HD 4K") == "ＨＤ\u3000４Ｋ"
    assert half_width_katakana("ドラマ・ガンダム、。") == "ﾄﾞﾗﾏ･ｶﾞﾝﾀﾞﾑ､｡"
    for name in ("ドラマ", "SF", "HD", "eスポーツ", "佐藤 亜香子", "GRAND港ピクチャーズ", "RPG"):
        variants = spellings(name)
        assert variants, name
        assert all(normalise_name(v) == normalise_name(name) and v != name for v in variants), name
    assert spellings("恋愛") == []  # plain kanji has no other width


def test_width_and_case_variants_of_one_name_are_one_vocabulary_entry():
    names = pd.Series(["ドラマ", "ﾄﾞﾗﾏ", "SF", "ＳＦ", "sf", "恋愛", None, " \u200b "])
    vocabulary = Vocabulary.by_frequency(names, limit=10, normalised=True)
    assert vocabulary.tokens == ["sf", "ドラマ", "恋愛"]  # by count (3, 2, 1), then by name
    assert list(vocabulary.lookup(["ﾄﾞﾗﾏ", "ＳＦ", "Sf", "恋愛", "ホラー", None, 3])) == [3, 2, 2, 4, OOV, OOV, OOV]
    exact = Vocabulary.by_frequency(names, limit=10)  # without normalisation (video ids, older specs)
    assert len(exact.tokens) == 7 and exact.lookup(["ﾄﾞﾗﾏ"])[0] != exact.lookup(["ドラマ"])[0]


# -- text terms -----------------------------------------------------------------------------------

def test_japanese_titles_become_overlapping_character_pairs():
    assert text_terms("東京の夜景を楽しむ大人の旅") == [
        "東京", "京の", "の夜", "夜景", "景を", "を楽", "楽し", "しむ", "む大", "大人", "人の", "の旅"]
    # Two titles about the same thing share terms; scikit-learn's default saw two unrelated words.
    a, b = set(text_terms("東京の夜景を楽しむ大人の旅")), set(text_terms("大人の東京ひとり旅"))
    assert {"東京", "大人"} <= a & b
    legacy = TfidfVectorizer().build_analyzer()
    assert legacy("東京の夜景を楽しむ大人の旅") == ["東京の夜景を楽しむ大人の旅"]
    assert text_terms("剣") == ["剣"] and text_terms("港 と GRAND") == ["港", "と", "grand"]
    assert text_terms("ゲーム・アニメ") == ["ゲー", "ーム", "アニ", "ニメ"]  # the middle dot separates


def test_english_text_keeps_exactly_its_old_terms():
    legacy = TfidfVectorizer().build_analyzer()
    for text in ("A gentle drama about letters and grief. Set around night, with a \"quiet river\" twist.",
                 "Let's play: retro_games 2 4K HD x", "Starring Akako Sato, Miri Suzuki. From Blue Harbor Pictures",
                 ""):
        assert text_terms(text) == legacy(text), text
    english = generate_demo_data(tiny_demo_size(), NOW).videos
    for text in english["title"] + " " + english["description"]:
        assert text_terms(text) == legacy(text)


def test_mixed_titles_and_their_width_variants_give_the_same_terms():
    title = "家族の秘密 Vol.2：Blue Harbor ピクチャーズ"
    terms = text_terms(title)
    assert terms == ["家族", "族の", "の秘", "秘密", "vol", "blue", "harbor", "ピク", "クチ", "チャ", "ャー", "ーズ"]
    for variant in (full_width(title), half_width_katakana(title), full_width(half_width_katakana(title)),
                    title.upper(), title.replace(" ", "\u3000")):
        assert text_terms(variant) == terms, variant
    assert text_terms("cafe\u0301 au lait") == ["café", "au", "lait"]  # a separate accent joins its letter
    assert text_terms("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # vowel signs are marks: words stay whole


def test_text_input_of_variant_spellings_is_the_same_vector():
    japanese = generate_demo_data(tiny_demo_size(), NOW, lang="ja")
    catalogue, likes, profiles = japanese.pipeline_frames()
    spec = fit_feature_spec(catalogue, likes, NOW, profiles=profiles)
    assert spec.text_tokenizer == TEXT_TOKENIZER and spec.name_normalisation == NAME_NORMALISATION
    assert any(len(t) == 2 and "\u3040" <= t[0] <= "\u9fff" for t in spec.text_terms)
    variant = catalogue.assign(title=catalogue["title"].map(lambda t: full_width(half_width_katakana(t))),
                               genre=catalogue["genre"].map(lambda g: (spellings(g) or [g])[0]),
                               maker=catalogue["maker"].map(lambda m: (spellings(m) or [m])[0]),
                               performers=catalogue["performers"].map(lambda ps: [(spellings(p) or [p])[0] for p in ps]),
                               tags=catalogue["tags"].map(lambda ts: [(spellings(t) or [t])[0] for t in ts]))
    assert (variant["genre"] != catalogue["genre"]).mean() > 0.3
    popularity = np.zeros(len(catalogue))
    original, respelled = item_features(spec, catalogue, popularity, NOW), item_features(spec, variant, popularity, NOW)
    for name in original:
        np.testing.assert_array_equal(original[name], respelled[name], err_msg=name)


# -- feature specs: current and older ----------------------------------------------------------------

def test_hostile_japanese_text_is_counted_and_cleaned_like_other_hostile_text():
    catalogue = _validation_catalogue()
    catalogue.loc[0, "description"] = "東京の夜景を楽しむ大人の旅。" * 2_000  # 30,000 characters
    catalogue.loc[1, "title"], catalogue.loc[1, "description"] = "★☆♪！？・…【】", "〜〜〜※※※"  # only symbols
    catalogue.loc[2, "title"], catalogue.loc[2, "description"] = "🎬🍿✨", "😀😀😀"  # only emoji
    catalogue.loc[3, "title"] = "か" + "\u3099" * 12 + "の夜景"  # a kana under a pile of voicing marks
    catalogue.loc[4, "title"] = "新作\u200b\u202eドラマ\x07"  # zero-width, bidirectional and control characters
    data = prepare_training_data(catalogue, _validation_likes(catalogue), VALIDATION_NOW,
                                 QualityRules(min_likes=10, max_repaired_video_share=0.2))

    assert data.passed, data.report()  # 5 of 50 videos repaired: within the tolerance set above
    counts = {o.rule: o.bad_rows for o in data.outcomes}

    def count(rule_start: str) -> int:
        return next(n for rule, n in counts.items() if rule.startswith(rule_start))

    assert count("title and description together at most") == 1
    assert count("title and description have at least one word") == 2  # the symbols and the emoji
    assert count("title and description without more than") == 1
    assert count("title and description without control characters") == 1
    assert count("title and description without bidirectional controls") == 1
    cleaned = data.catalogue.set_index("id").loc[catalogue["id"]]
    assert len(cleaned["description"].iloc[0]) == 20_000  # truncated, as English text is
    assert unicodedata.combining(cleaned["title"].iloc[3][1]) and cleaned["title"].iloc[3].count("\u3099") <= 4
    assert not any(c in cleaned["title"].iloc[4] for c in "\u200b\u202e\x07")
    assert text_terms(cleaned["title"].iloc[1] + " " + cleaned["description"].iloc[1]) == []  # no text feature
    assert text_terms(cleaned["title"].iloc[3])[-2:] == ["の夜", "夜景"]  # the words around the marks survive


def test_a_spec_written_before_normalisation_is_served_as_it_was_trained():
    japanese = generate_demo_data(tiny_demo_size(), NOW, lang="ja")
    catalogue, likes, profiles = japanese.pipeline_frames()
    current = fit_feature_spec(catalogue, likes, NOW, profiles=profiles)
    again = FeatureSpec.from_json(current.to_json())
    assert again.name_normalisation == NAME_NORMALISATION and again.text_tokenizer == TEXT_TOKENIZER
    assert again.genres.normalised and again.regions.normalised and not again.videos.normalised
    assert again.genres.lookup(["ﾄﾞﾗﾏ"])[0] == again.genres.lookup(["ドラマ"])[0] != OOV

    # An older version's spec: no normalisation keys, names as stored, scikit-learn's terms.
    payload = json.loads(current.to_json())
    del payload["name_normalisation"], payload["text_tokenizer"]
    payload["genres"] = ["ドラマ", "Drama"]
    payload["text_terms"], payload["text_idf"] = ["drama", "東京の夜景"], [1.0, 2.0]
    older = FeatureSpec.from_json(json.dumps(payload))
    assert older.name_normalisation == LEGACY_NAME_NORMALISATION and older.text_tokenizer == LEGACY_TEXT_TOKENIZER
    assert list(older.genres.lookup(["ドラマ", "Drama", "ﾄﾞﾗﾏ", "drama"])) == [2, 3, OOV, OOV]
    matrix = older.text_vectorizer().transform(["Drama 東京の夜景"])
    assert sorted(matrix.indices) == [0, 1]  # the whole phrase was one of its terms
    payload["name_normalisation"] = "nfkc-casefold-9"
    with pytest.raises(ValueError, match="unknown name_normalisation"):
        FeatureSpec.from_json(json.dumps(payload))


def test_the_legacy_tokenizer_can_still_be_chosen_for_comparisons():
    english = generate_demo_data(tiny_demo_size(), NOW)
    catalogue, likes, profiles = english.pipeline_frames()
    legacy = fit_feature_spec(catalogue, likes, NOW, FeatureConfig(text_tokenizer=LEGACY_TEXT_TOKENIZER), profiles)
    current = fit_feature_spec(catalogue, likes, NOW, profiles=profiles)
    assert legacy.text_terms == current.text_terms and legacy.text_idf == current.text_idf
    assert legacy.name_normalisation == LEGACY_NAME_NORMALISATION and not legacy.genres.normalised
    assert {g.lower() for g in legacy.genres.tokens} == set(current.genres.tokens)
    with pytest.raises(ValueError, match="unknown text_tokenizer"):
        fit_feature_spec(catalogue, likes, NOW, FeatureConfig(text_tokenizer="whitespace"), profiles)


# -- the same rule in the Edge Functions -------------------------------------------------------------

PARITY_SCRIPT = """
import { normaliseName, parseFeatureSpec } from "{features}";
const input = JSON.parse(await Deno.readTextFile(Deno.args[0]));
const spec = input.spec ? parseFeatureSpec(input.spec) : null;
const vocabularies = spec ? { genres: spec.genres, makers: spec.makers, age_ranges: spec.ageRanges,
  regions: spec.regions } : {};
const lookups = Object.fromEntries(Object.entries(input.lookups ?? {}).map(
  ([name, values]) => [name, values.map((v) => vocabularies[name].lookup(v))]));
console.log(JSON.stringify({ names: input.names.map(normaliseName), lookups }));
"""


def deno_normalise(tmp_path: Path, names: list[str], spec: str | None = None,
                   lookups: dict[str, list[str | None]] | None = None) -> dict:
    """features.ts's normaliseName on ``names`` and, with a spec, its vocabularies' lookups."""
    deno = tool("deno", "TWOTOWER_DENO")
    script = tmp_path / "parity.ts"
    script.write_text(PARITY_SCRIPT.replace("{features}", (FUNCTIONS / "_shared" / "features.ts").as_uri()))
    data = tmp_path / "parity.json"
    data.write_text(json.dumps({"names": names, "spec": spec, "lookups": lookups or {}}))
    result = run([deno, "run", "--no-config", "--no-lock", f"--allow-read={tmp_path}", str(script), str(data)],
                 deno_env(), cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    return json.loads(result.stdout)


def _hostile_strings(n: int, seed: int) -> list[str]:
    """Random short strings from the characters normalisation is about, in every combination."""
    pool = ([chr(c) for c in range(0x20, 0x7F)] + list("ßẞİıΣσςΟΔÅÅ\u212bǅﬁﬀ㈱①Ⅻ™½")
            + [chr(c) for c in range(0xFF01, 0xFFA0)] + [chr(c) for c in range(0x3040, 0x3100)]
            + list("東京夜景葛飾佐藤亜香子剣") + [chr(c) for c in range(0x0300, 0x0370, 7)]
            + list("\u3099\u309a\u200b\u200c\u200d\u200e\u202e\u2066\ufeff\u00ad\ufe0f\U000e0100\u3000\u00a0\u2028"
                   "\x00\x07\t\n\x1f\x7f\x85\x9f") + list("😀👨\u200d👩\u200d👧❤🇯🇵"))
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 14))) for _ in range(n)]


def test_the_edge_functions_normalise_exactly_as_the_pipeline(tmp_path):
    japanese = generate_demo_data(tiny_demo_size(), NOW, lang="ja")
    demo_names = sorted({*japanese.videos["genre"], *japanese.videos["maker"], *japanese.tags["name"],
                         *japanese.performers["name"]})
    assigned = [chr(cp) for cp in range(sys.maxunicode + 1)
                if not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) != "Cn"]
    names = [*TRICKY, *demo_names, *_hostile_strings(3_000, seed=1), *assigned]
    # Every character assigned in Python's Unicode database: Deno's may be newer (a character
    # assigned since has no mapping here), which is why only assigned ones are compared.
    deno = deno_normalise(tmp_path, names)["names"]
    assert len(deno) == len(names) > 200_000
    differ = [(n, p, d) for n, p, d in zip(names, map(normalise_name, names), deno) if p != d]
    assert not differ, f"{len(differ)} differ, e.g. {differ[:5]}"


@functools.cache
def _japanese_spec_json() -> str:
    japanese = generate_demo_data(tiny_demo_size(), NOW, lang="ja")
    catalogue, likes, profiles = japanese.pipeline_frames()
    profiles = profiles.assign(region=profiles["region"].map({"Kanto": "関東", "Kansai": "近畿"}))
    return fit_feature_spec(catalogue, likes, NOW, profiles=profiles).to_json()


def test_the_edge_functions_find_every_spelling_of_a_name_where_the_pipeline_does(tmp_path):
    spec_json = _japanese_spec_json()
    spec = FeatureSpec.from_json(spec_json)
    japanese = generate_demo_data(tiny_demo_size(), NOW, lang="ja")
    lookups: dict[str, list[str | None]] = {
        "genres": sorted(set(japanese.videos["genre"])), "makers": sorted(set(japanese.videos["maker"])),
        "age_ranges": ["25-34", "２５-３４", "unknown", None], "regions": ["関東", "　関東　", "近畿", "Kanto"],
    }
    for name in ("genres", "makers"):
        lookups[name] += [v for value in lookups[name][:30] for v in spellings(value)] + ["", "未知", None]
    assert any(value != normalise_name(value) for value in lookups["genres"] if value)  # variants are asked
    deno = deno_normalise(tmp_path, [], spec_json, lookups)["lookups"]
    vocabularies = {"genres": spec.genres, "makers": spec.makers, "age_ranges": spec.age_ranges,
                    "regions": spec.regions}
    for name, values in lookups.items():
        python = [int(i) for i in vocabularies[name].lookup(values)]
        assert deno[name] == python, name
    # Every spelling of a genre in the catalogue is a known genre, one entry per genre.
    assert OOV not in deno["genres"][:len(set(japanese.videos["genre"]))]
    assert len(set(deno["genres"]) - {OOV}) == len({normalise_name(g) for g in japanese.videos["genre"]})


# -- a whole weekly run on a Japanese catalogue ------------------------------------------------------

def test_a_weekly_run_on_a_japanese_catalogue_trains_serves_and_understands_its_names(
        tmp_path, postgres_server, monkeypatch):
    url = new_database(postgres_server, "ja")
    # published_pipeline generates English demo data; the same size in Japanese instead.
    monkeypatch.setitem(published_pipeline.__wrapped__.__globals__, "generate_demo_data",
                        functools.partial(generate_demo_data, lang="ja"))
    with published_pipeline(tmp_path / "home", url, PUBLISHABLE, QUICK) as state:
        assert state.first is not None and state.first.success
        with db.connect(url) as conn:
            record = vector_store.active_record(conn)
            assert record is not None
            raw_genres = [g for (g,) in conn.execute("select distinct genre from public.videos")]
            videos = conn.execute("select count(*) from public.videos").fetchone()[0]
            embedded = conn.execute("select count(*) from public.two_tower_item_embeddings where model_version = %s",
                                    (record.version,)).fetchone()[0]
            user = conn.execute("select user_id from public.likes group by user_id order by count(*) desc "
                                "limit 1").fetchone()[0]
            served = conn.execute("select r.video_id, v.title from public.recommend_videos(%s, 10) r "
                                  "join public.videos v on v.id = r.video_id", (user,)).fetchall()
        spec = load_version(record).spec
    assert "ドラマ" in raw_genres and "ﾄﾞﾗﾏ" in raw_genres and len(raw_genres) > 24  # stored in several widths
    assert spec.name_normalisation == NAME_NORMALISATION and spec.text_tokenizer == TEXT_TOKENIZER
    assert len(spec.genres.tokens) == 24 and "ドラマ" in spec.genres.tokens and "sf" in spec.genres.tokens
    assert not any("\u3000" in p for p in spec.performers.tokens)
    assert not any(unicodedata.normalize("NFKC", t) != t for t in spec.tags.tokens + spec.makers.tokens)
    assert {"家族", "秘密", "再会"} & set(spec.text_terms)
    assert embedded == videos
    assert len(served) == 10 and all(any("\u3040" <= c <= "\u9fff" for c in title) for _, title in served)
