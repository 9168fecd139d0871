"""Synthetic catalogue and likes in the app's own tables, for demos, tests and benchmarks.

Random likes would make every model look equally bad, and likes that content alone explains
would make every model that reads content look as good as the ceiling; real likes are neither.
So the demo likes have the structure real ones have:

- content: videos and users live in one latent space built from genres, makers, performers and
  tags, and titles and descriptions carry genre words with noise (``catalogue``, ``texts``,
  ``users``); tastes drift over the six months;
- collaborative structure content does not explain: item communities (fan groups, series) that
  cut across genres and makers, each user following a few (``communities``);
- time: likes in sessions of minutes to an hour or two, days apart; users who pause for weeks
  and come back, and users who stop two months or more before ``now`` (``activity``);
- demographics with modest signal in the optional ``profiles`` table (``profiles``).

The catalogue is written in English or in Japanese (``lang``, ``LANGUAGES``; the words are in
``words`` and ``words_ja``) with the same hidden structure; the Japanese one also stores some names
and titles in other widths and cases, as hand-filled catalogues do (``variants``).

The hidden truth comes along as ``DemoData.truth`` (:class:`DemoTruth`), and
:func:`oracle_scores` turns it into the generator's own probability of each next like: the
ceiling any model of these likes can approach. To find users who stopped or paused, use
:func:`activity_summary` on any likes frame, or ``DemoTruth.stopped_user_ids`` /
``DemoTruth.paused_user_ids`` for what the generator planned.
"""

from twotower_pipeline.demo_data.activity import STOPPED_DAYS, activity_summary
from twotower_pipeline.demo_data.frames import DEMO_TABLES, DemoData
from twotower_pipeline.demo_data.generate import LANGUAGES, generate_demo_data
from twotower_pipeline.demo_data.loading import load_demo_data
from twotower_pipeline.demo_data.profiles import AGE_RANGES, REGIONS
from twotower_pipeline.demo_data.size import (
    CATALOGUE_SPAN,
    LIKE_WINDOW,
    MAX_USER_SHARE,
    MIN_LIKES_PER_USER,
    DemoDataError,
    DemoSize,
    tiny_demo_size,
)
from twotower_pipeline.demo_data.truth import DemoTruth, oracle_scores

__all__ = [
    "AGE_RANGES",
    "CATALOGUE_SPAN",
    "DEMO_TABLES",
    "LANGUAGES",
    "LIKE_WINDOW",
    "MAX_USER_SHARE",
    "MIN_LIKES_PER_USER",
    "REGIONS",
    "STOPPED_DAYS",
    "DemoData",
    "DemoDataError",
    "DemoSize",
    "DemoTruth",
    "activity_summary",
    "generate_demo_data",
    "load_demo_data",
    "oracle_scores",
    "tiny_demo_size",
]
