"""The charts and tables the Dagster UI and MLflow show: plain functions of plain data (PNG bytes,
Markdown strings), no Dagster and no TensorFlow, so every asset and benchmark draws them one way."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from twotower_pipeline.model.evaluation import SEED_TARGETS

if TYPE_CHECKING:
    from twotower_pipeline.model.importance import GroupImportance
    from twotower_pipeline.publishing import EmbeddingReport

REPORTED_METRICS = ("recall_at_50", "precision_at_10", "ndcg_at_10", "auc", "coverage_at_10", "coverage_at_50",
                    "genre_entropy_at_10")


def figure_png(draw: Callable, figsize: tuple[float, float] = (6, 3.2)) -> bytes:
    """One matplotlib figure (Agg canvas, no pyplot state) drawn by ``draw(ax)``, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    draw(fig.add_subplot())
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """A PNG inlined in Markdown (what a Dagster Markdown metadata value shows)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def png_to_array(png: bytes) -> np.ndarray:
    """PNG bytes as an RGB array (what ``mlflow.log_image`` takes)."""
    import matplotlib.image

    return (matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255).astype(np.uint8)


def loss_curve_png(history: dict[str, list[float]]) -> bytes:
    """Training loss per epoch, and validation Recall@50 on a second axis."""

    def draw(ax):
        epochs = range(1, len(history.get("loss", [])) + 1)
        ax.plot(epochs, history.get("loss", []), marker="o", color="tab:blue", label="training loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        if "val_recall_at_50" in history:
            right = ax.twinx()
            right.plot(epochs, history["val_recall_at_50"], marker="s", color="tab:orange",
                       label="validation Recall@50")
            right.set_ylabel("validation Recall@50")
            right.legend(loc="upper right")
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)

    return figure_png(draw)


def metrics_table(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> str:
    """The run's served metrics beside each baseline's and the design document's targets."""
    columns = [("two-tower (this run)", metrics)] + [(name, values) for name, values in baselines.items()]
    lines = ["| metric | " + " | ".join(name for name, _ in columns) + " | design target |",
             "|---" * (len(columns) + 2) + "|"]
    for name in REPORTED_METRICS:
        cells = [f"{values.get(name, float('nan')):.4f}" for _, values in columns]
        target = SEED_TARGETS.get(name)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'> ' + str(target) if target else '-'} |")
    return "\n".join(lines)


def shard_table(reports: Mapping[str, EmbeddingReport], shards: list[str]) -> str:
    """Rows, seconds, skipped videos and norms per version and shard of a re-embedding run."""
    lines = ["| version | shard | rows written | seconds | skipped | norm min / mean / max |",
             "|---|---|---:|---:|---|---|"]
    for version, report in reports.items():
        for shard in shards:
            part = report.shards[shard]
            skipped = ", ".join(f"{why}: {n}" for why, n in part.skipped.items()) or "-"
            lines.append(f"| {version} | {shard} | {part.written} | {part.seconds:.2f} | {skipped} | "
                         f"{part.norm_min:.4f} / {part.norm_mean:.4f} / {part.norm_max:.4f} |")
    return "\n".join(lines)


def importance_png(importance: Mapping[str, GroupImportance], title: str | None = None) -> bytes:
    """Horizontal bars of each group's mean drop in Recall@50, error bars +- one standard deviation
    of the shuffles, most important on top (matplotlib's Agg canvas; no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ordered = sorted(importance.items(), key=lambda item: item[1].mean)
    repeats = sorted({value.repeats for _, value in ordered})
    fig = Figure(figsize=(6.4, 1.2 + 0.26 * max(len(ordered), 1)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = [name for name, _ in ordered]
    means = [value.mean for _, value in ordered]
    stds = [value.std for _, value in ordered]
    colours = ["tab:green" if value.low > 0 else "tab:gray" for _, value in ordered]
    ax.barh(names, means, xerr=stds, color=colours, ecolor="black", capsize=2, error_kw={"linewidth": 0.8})
    ax.axvline(0.0, color="black", linewidth=0.6)
    shuffles = "/".join(str(r) for r in repeats) or "0"
    ax.set_xlabel(f"drop in Recall@50 when shuffled (mean \u00b1 sd of {shuffles} shuffles)\n"
                  "green: above 0 beyond one sd; grey: within one sd of 0", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
