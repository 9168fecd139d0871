"""Spelling variants: the same name stored in another width or case, as a catalogue filled in by
hand (or imported from several sources) stores it.

A Japanese catalogue writes 「ドラマ」 and 「ﾄﾞﾗﾏ」 (half-width katakana), 「HD」 and 「ＨＤ」
(full-width letters), 「佐藤 亜香子」 and 「佐藤　亜香子」 (an ideographic space), 「Vol.3」 and
「Ｖｏｌ．３」. Every variant made here normalises (``features.normalise_name``: NFKC, lower case) to
its original, so a pipeline that normalises sees one name and one that does not sees two.

Variants change strings only, never which video has which genre, maker, tag or performer: a
variant tag or performer is another row with the variant name, linked from some of the original's
videos instead of the original. The draws come from their own generator, so the catalogue, users
and likes are the same with or without variants.
"""

from __future__ import annotations

import unicodedata
from dataclasses import replace

import numpy as np
import pandas as pd

from twotower_pipeline.demo_data.draws import uuid_strings
from twotower_pipeline.demo_data.frames import DemoData
from twotower_pipeline.model.features import normalise_name

GENRE_SHARE = 0.08
"""Share of videos whose genre is stored in a variant spelling (where the genre has one)."""
MAKER_SHARE = 0.10
TITLE_SHARE = 0.10
TAG_SHARE = 0.3
"""Share of the tags (with a variant spelling) that also exist as a variant row..."""
PERFORMER_SHARE = 0.2
LINK_SHARE = 0.4
"""...and the share of such a tag's or performer's video links that point to the variant row."""


def _half_width_table() -> dict[str, str]:
    """Full-width katakana and Japanese punctuation -> their half-width spelling (a voiced kana as
    the kana plus a half-width voicing mark: ガ -> ｶﾞ)."""
    table: dict[str, str] = {}
    half = [chr(cp) for cp in range(0xFF61, 0xFFA0)]
    for h in half:
        table.setdefault(unicodedata.normalize("NFKC", h), h)
    for h in half:
        for mark in ("\uff9e", "\uff9f"):
            composed = unicodedata.normalize("NFKC", h + mark)
            if len(composed) == 1:
                table.setdefault(composed, h + mark)
    return {full: h for full, h in table.items() if len(full) == 1 and full != h and not full.isascii()}


_HALF_WIDTH = str.maketrans(_half_width_table())
_FULL_WIDTH = str.maketrans({chr(cp): chr(cp + 0xFEE0) for cp in range(0x21, 0x7F)} | {" ": "\u3000"})


def full_width(text: str) -> str:
    """ASCII letters, digits, punctuation and spaces in their full-width forms: "HD 4K" -> 「ＨＤ　４Ｋ」."""
    return text.translate(_FULL_WIDTH)


def half_width_katakana(text: str) -> str:
    """Katakana (and 、。「」・ー) in their half-width forms: 「ドラマ」 -> 「ﾄﾞﾗﾏ」."""
    return text.translate(_HALF_WIDTH)


def spellings(name: str) -> list[str]:
    """The other spellings of ``name`` that normalise to the same name (none for plain kanji)."""
    wanted = normalise_name(name)
    out: list[str] = []
    for candidate in (full_width(name), half_width_katakana(name), full_width(half_width_katakana(name)),
                      name.upper(), name.lower()):
        if candidate != name and candidate not in out and normalise_name(candidate) == wanted:
            out.append(candidate)
    return out


def _respell(values: np.ndarray, chosen: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """``values`` with the rows in ``chosen`` replaced by one of their spellings (``pick`` in [0, 1))."""
    out = values.copy()
    for i in np.flatnonzero(chosen):
        options = spellings(values[i]) if isinstance(values[i], str) else []
        if options:
            out[i] = options[int(pick[i] * len(options))]
    return out


def _variant_rows(rng: np.random.Generator, names: pd.DataFrame, links: pd.DataFrame, key: str,
                  share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For ``share`` of the rows of ``names`` (id, name) with another spelling, a new row with that
    spelling; LINK_SHARE of their links (``key`` is the link column) are moved to it."""
    chosen = rng.random(len(names)) < share
    pick = rng.random(len(names))
    ids = np.array(uuid_strings(rng, len(names)), dtype=object)
    taken = set(names["name"])
    new_ids, new_names, moved_from = [], [], []
    for i in np.flatnonzero(chosen):
        options = [s for s in spellings(names["name"].iat[i]) if s not in taken]
        if options:
            spelling = options[int(pick[i] * len(options))]
            taken.add(spelling)
            new_ids.append(ids[i])
            new_names.append(spelling)
            moved_from.append(names["id"].iat[i])
    move = rng.random(len(links)) < LINK_SHARE
    target = dict(zip(moved_from, new_ids))
    relinked = links[key].map(target)
    links = links.assign(**{key: np.where(move & relinked.notna().to_numpy(), relinked, links[key])})
    names = pd.concat([names, pd.DataFrame({"id": new_ids, "name": new_names})], ignore_index=True)
    return names, links


def with_spelling_variants(data: DemoData, rng: np.random.Generator) -> DemoData:
    """The same data with some names and titles in other spellings (see the module docstring)."""
    n = len(data.videos)
    videos = data.videos.copy()
    for column, share in (("genre", GENRE_SHARE), ("maker", MAKER_SHARE)):
        chosen, pick = rng.random(n) < share, rng.random(n)
        videos[column] = _respell(videos[column].to_numpy(dtype=object), chosen, pick)
    chosen = rng.random(n) < TITLE_SHARE
    titles = videos["title"].to_numpy(dtype=object).copy()
    titles[chosen] = [full_width(half_width_katakana(t)) for t in titles[chosen]]
    videos["title"] = titles
    tags, video_tags = _variant_rows(rng, data.tags, data.video_tags, "tag_id", TAG_SHARE)
    performers, video_performers = _variant_rows(rng, data.performers, data.video_performers, "performer_id",
                                                 PERFORMER_SHARE)
    return replace(data, videos=videos, tags=tags, video_tags=video_tags, performers=performers,
                   video_performers=video_performers)
