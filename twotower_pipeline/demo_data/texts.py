"""Titles and descriptions, so that text features carry genre signal, with noise.

Theme words come from the video's own genre four times in five, and noise words are mixed in,
so a text model can guess a video's genre often but not always. The words and templates come
from a ``WordPools``; only the choices are drawn here.
"""

from __future__ import annotations

import numpy as np

from twotower_pipeline.demo_data.draws import group_lists
from twotower_pipeline.demo_data.words import WordPools


def titles_and_descriptions(
    rng: np.random.Generator,
    words: WordPools,
    genre_keys: list[str],
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
    """Titles and descriptions: genre words, tag names and credits, mixed with noise words.

    ``genre_keys`` are the keys of the genres ``genre_of_video`` indexes."""
    n_videos = len(genre_of_video)
    n_genres = len(genre_keys)
    themes = [words.genre_themes[key] for key in genre_keys]
    # Theme words: from the video's genre four times in five, otherwise from any genre.
    theme_genre = np.where(
        rng.random((n_videos, 3)) < 0.8, genre_of_video[:, None], rng.integers(n_genres, size=(n_videos, 3))
    ).tolist()
    theme_word = rng.integers(10, size=(n_videos, 3)).tolist()
    noise = rng.integers(len(words.noise_words), size=(n_videos, 5)).tolist()
    adjective = rng.integers(len(words.adjectives), size=n_videos).tolist()
    template = rng.integers(len(words.title_templates), size=n_videos).tolist()
    volume = rng.integers(2, 9, size=n_videos).tolist()
    tags_of = group_lists(video_tag_pairs, n_videos)
    performers_of = group_lists(video_performer_pairs, n_videos)
    title_words = {
        w: words.title_case(w) for w in (*(w for t in themes for w in t), *words.noise_words, *words.general_tags)
    }
    genre_nouns = [words.genre_noun(words.genre_names[key]) for key in genre_keys]
    genres = genre_of_video.tolist()
    makers = maker_of_video.tolist()
    minutes = (duration_s // 60).tolist()
    separator = words.list_separator

    titles: list[str] = []
    descriptions: list[str] = []
    for i in range(n_videos):
        g = genres[i]
        t0, t1, t2 = (themes[theme_genre[i][k]][theme_word[i][k]] for k in range(3))
        n0, n1, n2, n3, n4 = (words.noise_words[k] for k in noise[i])
        genre_tag = next((tag_names[t] for t in tags_of[i] if tag_genre[t] == g), t0)
        title_template = words.title_templates[template[i]]
        if t1 == t0 and "{theme2}" in title_template:
            title_template = words.title_without_theme2
        titles.append(title_template.format(
            theme=title_words[t0], theme2=title_words[t1], noise=title_words[n0], noise2=title_words[n1],
            genre_tag=title_words[genre_tag], volume=volume[i],
        ))
        descriptions.append(words.description_template.format(
            adjective=words.adjectives[adjective[i]], genre=genre_nouns[g], theme2=t1, theme3=t2,
            noise2=n1, noise3=n2, noise4=n3, noise5=n4,
            performers=separator.join(performer_names[p] for p in performers_of[i]),
            maker=maker_names[makers[i]], minutes=minutes[i],
            tags=separator.join(tag_names[t] for t in tags_of[i]),
        ))
    return titles, descriptions
