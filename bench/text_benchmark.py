"""The item tower's text input on a Japanese catalogue: what it is worth and what it costs.

    .venv/bin/python -m bench.text_benchmark quality                  # ~1-2 hours on 2 cores
    .venv/bin/python -m bench.text_benchmark quality --runs en/text/bigram/42,ja/text/bigram/42
    .venv/bin/python -m bench.text_benchmark cost --sizes 50000,1000000
    PYTHONPATH=/tmp/jp .venv/bin/python -m bench.text_benchmark cost  # with fugashi/unidic-lite, SudachiPy

**quality**: the demo data (default size; ``--videos`` etc.) in English and in Japanese, drawn from
the same seed, so the same videos, users, likes and hidden structure, only the words differ (the
Japanese catalogue also stores some names and titles in other widths and cases). For each run
``<lang>/<model>/<tokenizer>/<seed>``, ``train_two_tower`` as the weekly job trains it, at the data's
"now", and its metrics are those of what ``recommend_videos`` would serve on its holdout (each user's
newest likes); the holdout is the same in both languages. Models:

- ``full``: every input (the default ``TowerConfig``), with permutation importance (the default
  ``importance_repeats`` shuffles of each group on ``importance_users`` held-out users): the drop in
  served Recall@50 when titles and descriptions are shuffled across videos, mean and spread;
- ``text``: ``TowerConfig(item_features=("text",))``, the item tower reads nothing but title and
  description (the user tower as default): its served Recall@50 is what the text alone carries.

Tokenizers: ``bigram`` (the pipeline's ``nfkc-lower-cjk-bigram-1``), ``legacy`` (scikit-learn's default
pattern and exact names: the pipeline before), and, when importable, ``fugashi`` (MeCab with
unidic-lite) and ``sudachi`` (SudachiPy, core dictionary, mode C), each on the same normalised text.
Writes ``bench/results/text-quality.json`` after every run.

**cost**: for each language and catalogue size, a fresh process per measurement: the text vocabulary's
fit (``features.fit_text``, as ``fit_feature_spec`` runs it) and the transform every training and every
re-embedding runs (``features.text_inputs``: TF-IDF and each video's top 32 terms), CPU and wall
seconds and peak memory above the process's baseline (the catalogue's text loaded); and the
tokenizer alone per 1,000 videos (on 20,000 videos). Morphological analysers are timed per 1,000
videos (and at 50,000 videos in full); their cost at 1,000,000 is that rate times the size.
Writes ``bench/results/text-cost.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.machine import add_size_arguments, demo_size, machine
from twotower_pipeline.demo_data import DemoSize, generate_demo_data
from twotower_pipeline.model import features
from twotower_pipeline.model.features import (
    LEGACY_TEXT_TOKENIZER,
    TEXT_TOKENIZER,
    TEXT_TOKENIZERS,
    FeatureConfig,
    FeatureSpec,
    LogNormaliser,
    Vocabulary,
    catalogue_text,
    fit_text,
    normalise_text,
    text_inputs,
)

RESULTS = Path(__file__).resolve().parent / "results"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LANGUAGES = ("en", "ja")
TEXT_GROUP_INPUT = "text_idx"
SAMPLE_VIDEOS = 20_000  # tokenizer-only timing


# -- tokenizers ------------------------------------------------------------------------------------
def _keep(term: str) -> bool:
    """A morphological analyser's surface form is a term when it has a letter, digit, kana or
    kanji, and (as in the pipeline's terms) is not a single Latin letter or digit."""
    return any(c.isalnum() for c in term) and not (len(term) == 1 and term.isascii())


def _fugashi() -> object | None:
    try:
        import fugashi  # noqa: PLC0415
        tagger = fugashi.Tagger("-Owakati")
    except (ImportError, RuntimeError):
        return None

    def terms(text: str) -> list[str]:
        normalised = normalise_text(text[:features.MAX_TEXT_CHARS])
        return [t for t in tagger.parse(normalised).split(" ") if _keep(t)]
    return terms


def _sudachi() -> object | None:
    try:
        from sudachipy import Dictionary, SplitMode  # noqa: PLC0415
        tokenizer = Dictionary(dict="core").create(SplitMode.C)
    except (ImportError, RuntimeError, ValueError):
        return None

    def terms(text: str) -> list[str]:
        normalised = normalise_text(text[:features.MAX_TEXT_CHARS])
        out: list[str] = []
        for start in range(0, len(normalised), 10_000):  # SudachiPy refuses inputs over ~49 KB
            out += [m.surface() for m in tokenizer.tokenize(normalised[start:start + 10_000])]
        return [t for t in out if _keep(t)]
    return terms


TOKENIZER_NAMES = {"bigram": TEXT_TOKENIZER, "legacy": LEGACY_TEXT_TOKENIZER,
                   "fugashi": "fugashi-unidic-lite", "sudachi": "sudachi-core-c"}
_OPTIONAL = {"fugashi": _fugashi, "sudachi": _sudachi}


def available_tokenizers() -> list[str]:
    """Register the morphological analysers that import here; return every usable short name."""
    usable = ["bigram", "legacy"]
    for short, make in _OPTIONAL.items():
        name = TOKENIZER_NAMES[short]
        if name not in TEXT_TOKENIZERS:
            analyzer = make()
            if analyzer is None:
                continue
            TEXT_TOKENIZERS[name] = analyzer  # this process only: the benchmark's comparison
        usable.append(short)
    return usable


def package_version(name: str) -> str | None:
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# -- data ------------------------------------------------------------------------------------------
def demo_frames(size: DemoSize, lang: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return generate_demo_data(size, NOW, lang=lang).pipeline_frames()


def text_facts(text: pd.Series, tokenizer: str) -> dict[str, float]:
    """How the text splits into terms: per video, and how many terms more than one video shares."""
    analyzer = TEXT_TOKENIZERS[tokenizer]
    if analyzer is None:
        from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
        analyzer = TfidfVectorizer().build_analyzer()
    per_video = [set(analyzer(t)) for t in text]
    df = pd.Series([term for terms in per_video for term in terms]).value_counts()
    return {"distinct_terms": float(len(df)), "terms_in_two_or_more_videos": float((df >= 2).sum()),
            "mean_distinct_terms_per_video": float(np.mean([len(t) for t in per_video])),
            "share_of_videos_with_a_term": float(np.mean([len(t) > 0 for t in per_video]))}


# -- quality ---------------------------------------------------------------------------------------
def parse_run(text: str) -> tuple[str, str, str, int]:
    lang, model, tokenizer, seed = text.split("/")
    if lang not in LANGUAGES or model not in ("full", "text") or tokenizer not in TOKENIZER_NAMES:
        raise ValueError(f"bad run {text!r}: <en|ja>/<full|text>/<{'|'.join(TOKENIZER_NAMES)}>/<seed>")
    return lang, model, tokenizer, int(seed)


DEFAULT_RUNS = (
    "en/text/bigram/42", "ja/text/bigram/42", "en/full/bigram/42", "ja/full/bigram/42",
    "en/text/bigram/43", "ja/text/bigram/43", "en/full/bigram/43", "ja/full/bigram/43",
    "ja/text/legacy/42", "ja/text/fugashi/42", "ja/text/sudachi/42", "ja/full/legacy/42",
)


def train_run(frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], model: str, tokenizer: str,
              seed: int) -> dict:
    import keras  # noqa: PLC0415

    from twotower_pipeline.model.config import TowerConfig, TrainingConfig  # noqa: PLC0415
    from twotower_pipeline.model.importance import FEATURE_GROUPS  # noqa: PLC0415
    from twotower_pipeline.model.training import train_two_tower  # noqa: PLC0415

    catalogue, likes, profiles = frames
    tower = TowerConfig(item_features=("text",)) if model == "text" else TowerConfig()
    config = TrainingConfig(seed=seed, tower=tower, features=FeatureConfig(text_tokenizer=TOKENIZER_NAMES[tokenizer]))
    started = time.perf_counter()
    trained = train_two_tower(catalogue, likes, config, importance=model == "full", profiles=profiles, as_of=NOW)
    seconds = time.perf_counter() - started
    run = {
        "metrics": {k: trained.metrics[k] for k in ("recall_at_50", "ndcg_at_10", "precision_at_10", "auc")},
        "holdout_users": trained.metrics.get("holdout_users"),
        "text_terms": len(trained.spec.text_terms),
        "epochs_run": int(trained.stats["epochs_run"]),
        "best_epoch": int(trained.stats["best_epoch"]),
        "seconds": round(seconds, 1),
        "baselines_recall_at_50": {name: m["recall_at_50"] for name, m in trained.baselines.items()},
    }
    if model == "full":
        text_group = next(name for name, group in FEATURE_GROUPS.items() if TEXT_GROUP_INPUT in group.inputs)
        run["importance"] = {name: {"mean": v.mean, "std": v.std, "repeats": v.repeats}
                             for name, v in trained.importance.items()}
        run["text_importance"] = run["importance"][text_group]
    del trained
    keras.backend.clear_session()
    gc.collect()
    return run


def summarise(runs: dict[str, dict]) -> dict[str, dict]:
    """Per <lang>/<model>/<tokenizer>: text-only Recall@50 or the text group's importance, over seeds."""
    groups: dict[str, list[dict]] = {}
    for key, run in runs.items():
        lang, model, tokenizer, _ = parse_run(key)
        groups.setdefault(f"{lang}/{model}/{tokenizer}", []).append(run)
    out = {}
    for key, group in groups.items():
        recall = np.array([r["metrics"]["recall_at_50"] for r in group])
        entry = {"seeds": len(group), "recall_at_50_mean": float(recall.mean()),
                 "recall_at_50_sd": float(recall.std(ddof=1)) if len(group) > 1 else None}
        if "text_importance" in group[0]:
            means = np.array([r["text_importance"]["mean"] for r in group])
            entry.update({"text_importance_mean": float(means.mean()),
                          "text_importance_sd_across_seeds": float(means.std(ddof=1)) if len(group) > 1 else None,
                          "text_importance_shuffle_sd_mean": float(np.mean([r["text_importance"]["std"]
                                                                            for r in group]))})
        out[key] = entry
    for tokenizer in TOKENIZER_NAMES:
        for model, metric in (("text", "recall_at_50_mean"), ("full", "text_importance_mean")):
            en, ja = out.get(f"en/{model}/bigram"), out.get(f"ja/{model}/{tokenizer}")
            if en and ja and metric in en and metric in ja and en[metric]:
                ja[f"{metric}_japanese_over_english_bigram"] = ja[metric] / en[metric]
    return out


def markdown(summary: dict[str, dict]) -> str:
    lines = ["| language / model / tokenizer | seeds | served Recall@50 | text group importance (drop in R@50) |",
             "|---|---:|---:|---:|"]
    for key, s in sorted(summary.items()):
        sd = f" ± {s['recall_at_50_sd']:.4f}" if s.get("recall_at_50_sd") is not None else ""
        imp = ""
        if "text_importance_mean" in s:
            across = s.get("text_importance_sd_across_seeds")
            imp = (f"{s['text_importance_mean']:.4f} (shuffles ± {s['text_importance_shuffle_sd_mean']:.4f}"
                   + (f", seeds ± {across:.4f}" if across is not None else "") + ")")
        lines.append(f"| {key} | {s['seeds']} | {s['recall_at_50_mean']:.4f}{sd} | {imp} |")
    return "\n".join(lines)


def quality(options: argparse.Namespace) -> None:
    size = demo_size(options)
    usable = available_tokenizers()
    wanted = [r.strip() for r in (options.runs or ",".join(DEFAULT_RUNS)).split(",") if r.strip()]
    runs = [parse_run(r) for r in wanted]
    skipped = [r for r, (_, _, tokenizer, _) in zip(wanted, runs) if tokenizer not in usable]
    path = RESULTS / ("text-quality.json" if size == DemoSize() else
                      f"text-quality-{size.videos}v-{size.users}u-{size.likes}l.json")
    record = json.loads(path.read_text()) if options.resume and path.exists() else {}
    record.update({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": {"videos": size.videos, "users": size.users, "likes": size.likes, "seed": size.seed},
        "demo_now": NOW.isoformat(), "machine": machine(), "complete": False,
        "skipped_runs_tokenizer_not_installed": skipped,
        "packages": {p: package_version(p) for p in ("fugashi", "unidic-lite", "sudachipy", "sudachidict-core")},
    })
    record.setdefault("runs", {})
    record.setdefault("text_facts", {})
    frames = {}
    for lang in sorted({lang for lang, *_ in runs}):
        frames[lang] = demo_frames(size, lang)
        print(f"{lang}: {len(frames[lang][0]):,} videos, {len(frames[lang][1]):,} likes", file=sys.stderr, flush=True)
    same = frames.get("en") is None or frames.get("ja") is None or (
        frames["en"][1].equals(frames["ja"][1]) and frames["en"][0]["id"].equals(frames["ja"][0]["id"]))
    if not same:
        raise SystemExit("the English and Japanese demo data differ in their likes or videos: not comparable")
    for lang, frame in frames.items():
        for tokenizer in usable:
            key = f"{lang}/{tokenizer}"
            if key not in record["text_facts"]:
                record["text_facts"][key] = text_facts(catalogue_text(frame[0]), TOKENIZER_NAMES[tokenizer])
    for key, (lang, model, tokenizer, seed) in zip(wanted, runs):
        if key in skipped or key in record["runs"]:
            continue
        print(f"{key} ...", file=sys.stderr, flush=True)
        run = train_run(frames[lang], model, tokenizer, seed)
        record["runs"][key] = run
        shown = f", text importance {run['text_importance']['mean']:.4f} ± {run['text_importance']['std']:.4f}" \
            if "text_importance" in run else ""
        print(f"{key}: R@50 {run['metrics']['recall_at_50']:.4f}{shown}, {run['epochs_run']} epochs, "
              f"{run['seconds']:.0f} s", file=sys.stderr, flush=True)
        record["summary"] = summarise(record["runs"])
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    record["summary"] = summarise(record["runs"])
    record["complete"] = True
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(markdown(record["summary"]))
    print(f"\nwritten to {path}")


# -- cost ------------------------------------------------------------------------------------------
def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(options: argparse.Namespace) -> None:
    """One measurement in a fresh process: prints a JSON line."""
    available_tokenizers()
    tokenizer = TOKENIZER_NAMES[options.tokenizer]
    text = pd.read_parquet(options.texts)["text"]
    gc.collect()
    baseline = _current_rss_mib()
    out: dict[str, object] = {"videos": len(text), "baseline_rss_mib": round(baseline, 1)}
    config = FeatureConfig(text_tokenizer=tokenizer)
    if options.what == "tokenize":
        sample = text.iloc[:SAMPLE_VIDEOS].tolist()
        analyzer = TEXT_TOKENIZERS[tokenizer]
        if analyzer is None:
            from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
            analyzer = TfidfVectorizer().build_analyzer()
        analyzer(sample[0])  # compiles patterns, loads dictionaries
        cpu, wall = time.process_time(), time.perf_counter()
        terms = sum(len(analyzer(t)) for t in sample)
        out.update({"sample_videos": len(sample), "terms_per_video": terms / len(sample),
                    "cpu_ms_per_1000_videos": (time.process_time() - cpu) / len(sample) * 1e6,
                    "wall_ms_per_1000_videos": (time.perf_counter() - wall) / len(sample) * 1e6,
                    "mean_chars_per_video": float(np.mean([len(t) for t in sample]))})
    else:
        cpu, wall = time.process_time(), time.perf_counter()
        terms, idf = fit_text(text, config)
        out.update({"fit_cpu_s": time.process_time() - cpu, "fit_wall_s": time.perf_counter() - wall,
                    "fit_peak_above_baseline_mib": round(_peak_rss_mib() - baseline, 1), "text_terms": len(terms)})
        if options.what == "fit+transform":
            spec = FeatureSpec(
                videos=Vocabulary([]), genres=Vocabulary([]), makers=Vocabulary([]), performers=Vocabulary([]),
                tags=Vocabulary([]), text_terms=terms, text_idf=idf, price=LogNormaliser(0, 1),
                duration=LogNormaliser(0, 1), popularity=LogNormaliser(0, 1), age=LogNormaliser(0, 1),
                reference_time=NOW.isoformat(), text_tokenizer=tokenizer)
            before_peak = _peak_rss_mib()
            cpu, wall = time.process_time(), time.perf_counter()
            idx, weight = text_inputs(spec, text)
            out.update({"transform_cpu_s": time.process_time() - cpu, "transform_wall_s": time.perf_counter() - wall,
                        "peak_above_baseline_mib": round(_peak_rss_mib() - baseline, 1),
                        "transform_raised_peak": _peak_rss_mib() > before_peak,
                        "inputs_mib": round((idx.nbytes + weight.nbytes) / 2**20, 1),
                        "mean_terms_kept_per_video": float((idx > 0).sum(axis=1).mean())})
    print(json.dumps(out))


def measure(texts: Path, tokenizer: str, what: str) -> dict:
    command = [sys.executable, "-m", "bench.text_benchmark", "_child", "--texts", str(texts),
               "--tokenizer", tokenizer, "--what", what]
    result = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                            env=os.environ.copy())
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cost(options: argparse.Namespace) -> None:
    sizes = [int(s) for s in options.sizes.split(",")]
    usable = available_tokenizers()
    morphological = [t for t in usable if t in _OPTIONAL]
    record: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                    "packages": {p: package_version(p) for p in ("fugashi", "unidic-lite", "sudachipy",
                                                                 "sudachidict-core")},
                    "note": "CPU seconds are the process's own (the machine is shared: wall seconds vary with "
                            "load); peak memory is the process's peak RSS above its RSS with the texts loaded",
                    "measurements": []}
    path = RESULTS / "text-cost.json"
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            for lang in LANGUAGES:
                print(f"{lang} {size:,} videos: generating ...", file=sys.stderr, flush=True)
                videos = generate_demo_data(DemoSize(videos=size, users=200, likes=2_000), NOW, lang=lang).videos
                texts = Path(folder) / f"{lang}-{size}.parquet"
                pd.DataFrame({"text": catalogue_text(videos)}).to_parquet(texts)
                del videos
                gc.collect()
                plan = [("bigram", "tokenize"), ("bigram", "fit+transform")]
                if lang == "en":
                    plan += [("legacy", "tokenize"), ("legacy", "fit+transform")]
                else:
                    plan += [(t, "tokenize") for t in ["legacy", *morphological]]
                    if size <= 50_000:
                        plan += [(t, "fit+transform") for t in morphological]
                for tokenizer, what in plan:
                    result = measure(texts, tokenizer, what)
                    entry = {"language": lang, "videos": size, "tokenizer": TOKENIZER_NAMES[tokenizer],
                             "what": what, **result}
                    record["measurements"].append(entry)
                    print(json.dumps(entry), file=sys.stderr, flush=True)
                    path.write_text(json.dumps(record, indent=2) + "\n")
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    q = commands.add_parser("quality", help="train and score English and Japanese models")
    add_size_arguments(q)
    q.add_argument("--runs", help="comma-separated <lang>/<full|text>/<tokenizer>/<seed> (default: the standard set)")
    q.add_argument("--resume", action="store_true", help="keep the runs already in the results file")
    c = commands.add_parser("cost", help="time and memory of the text input at each catalogue size")
    c.add_argument("--sizes", default="50000,1000000")
    k = commands.add_parser("_child")
    k.add_argument("--texts", required=True)
    k.add_argument("--tokenizer", required=True, choices=list(TOKENIZER_NAMES))
    k.add_argument("--what", required=True, choices=["tokenize", "fit", "fit+transform"])
    options = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    {"quality": quality, "cost": cost, "_child": child}[options.command](options)


if __name__ == "__main__":
    main()
