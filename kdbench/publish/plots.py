"""PNG plots of a report (``kdbench report --plots DIR``); needs the ``plots`` extra (matplotlib).

``write_plots(summary, directory) -> list[Path]`` takes the leaderboards' summary
(``kdbench.publish.convergence.leaderboard_summary(frame)``) and writes, for every section of
the report (``kdbench.publish.summary.sections``: one per setting that varies, such as epochs
or device — plots group exactly as tables do, never across two settings) and every pair: test
top-1 vs temperature per loss (``<pair>-temperature.png``, only when a loss uses a
temperature); and per section: test top-1 vs student params and vs inference throughput, a
curve per method run on several pairs (a size sweep: its front; the ``MAX_CURVES`` best on
validation) and the Pareto front of all cases (the best top-1 for its size / for its speed)
dashed (``pareto-params.png``, ``pareto-throughput.png``). Files of a section carry its title
as a prefix (``epochs_8-…``) when there are several.

``write_history_plots(trend, directory) -> list[Path]`` takes a history's trend
(``kdbench.gate.history.History.trend``)
and writes per section and pair (``<pair>-history.png``): test top-1 over the runs with error
bars (± std over seeds) per method, and training speed over the runs; the steps
``kdbench compare`` decides are marked (red ▼ regression, green ▲ improvement).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from kdbench.publish.summary import SPEED
from kdbench.registry import KdbenchError
from kdbench.spec import stable_hash


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise KdbenchError("plots need matplotlib: pip install 'kdbench[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: pd.DataFrame, x: str, y: str, x_higher_better: bool) -> pd.DataFrame:
    """Rows not dominated on (x, y): no other row is at least as good on both and better on one."""
    ordered = points.sort_values([x, y], ascending=[not x_higher_better, False])
    best_before = ordered[y].astype(float).cummax().shift(fill_value=-float("inf"))
    return ordered[ordered[y] > best_before]


MAX_CURVES = 8  # methods drawn as curves in one plot, the best on validation


def method_fronts(points: pd.DataFrame, x: str) -> dict[str, pd.DataFrame]:
    """Per method run on more than one pair (a size sweep): its row per pair chosen on
    validation top-1 (one T of a swept method), sorted by ``x`` — its own curve of top-1 against
    student size or speed; the ``MAX_CURVES`` methods of best mean validation top-1, by name."""
    chosen = points.sort_values("val_top1_mean", ascending=False, na_position="last")
    chosen = chosen.drop_duplicates(["loss", "pair"])
    swept = chosen.groupby("loss").filter(lambda rows: rows["pair"].nunique() > 1)
    best = swept.groupby("loss")["val_top1_mean"].mean().nlargest(MAX_CURVES).index
    return {str(loss): swept[swept["loss"].eq(loss)].sort_values(x) for loss in sorted(best)}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


Figure = tuple[str, str, Callable[[Any], Any]]  # (file name, digest of its data, draw(plt))


Keep = Callable[[pd.DataFrame], bool]  # which sections (their rows) to plot


def figures(summary: pd.DataFrame, keep: Keep = lambda part: True) -> list[Figure]:
    """Every plot of ``summary`` (see the module's docstring) of the sections ``keep`` takes,
    not drawn yet: its file name, the digest of the data it is drawn from (a section's rows;
    ``stale`` compares it) and a function that draws it."""
    from kdbench.publish.summary import sections

    out: list[Figure] = []
    for title, part in ((t, p) for t, p in sections(summary) if keep(p)):
        ok = part.dropna(subset=["top1_mean"])
        suffix = f"\n({title})" if title else ""  # a second line: titles can be long
        digest = stable_hash({"data": _plotted(ok), "title": title})
        out += [
            (f"{_prefix(title)}{name}", digest, draw) for name, draw in _section_figures(ok, suffix)
        ]
    return out


PLOTTED = (  # the columns the plots are drawn from
    "pair",
    "loss",
    "T",
    "top1_mean",
    "top1_std",
    "val_top1_mean",
    "student_params_mean",
    "infer_throughput_mean",
)


def _plotted(ok: pd.DataFrame) -> list[list[object]]:
    """The values the plots of a section draw, rounded, NaN as None: what their digest covers."""
    return [
        [None if pd.isna(v) else round(float(v), 6) if isinstance(v, float) else v for v in row]
        for row in ok.reindex(columns=list(PLOTTED)).itertuples(index=False)
    ]


def write_plots(
    summary: pd.DataFrame, directory: Path | str, keep: Keep = lambda part: True
) -> list[Path]:
    """Draw ``figures(summary, keep)`` into ``directory``, each PNG carrying the digest of its
    data."""
    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return [
        _save(draw(plt), out / name, plt, digest) for name, digest, draw in figures(summary, keep)
    ]


def stale(
    summary: pd.DataFrame, directory: Path | str, keep: Keep = lambda part: True
) -> list[str]:
    """The plots of ``summary`` that ``directory`` lacks or holds drawn from other data, and the
    PNGs there that are no plot of it: what ``write_plots`` would change."""
    _pyplot()  # matplotlib, and with it Pillow
    from PIL import Image

    folder = Path(directory)
    expected = {name: digest for name, digest, _ in figures(summary, keep)}
    present = {p.name for p in folder.glob("*.png")}
    out = sorted(present - set(expected))
    for name, digest in expected.items():
        if name not in present:
            out.append(name)
            continue
        with Image.open(folder / name) as image:
            if image.info.get(DIGEST_KEY) != digest:
                out.append(name)
    return out


def _section_figures(ok: pd.DataFrame, suffix: str) -> list[tuple[str, Callable[[Any], Any]]]:
    def temperature(pair: str, rows: pd.DataFrame) -> Callable[[Any], Any]:
        def draw(plt):
            fig, ax = plt.subplots(figsize=(6, 4))
            for loss, curve in rows.sort_values("T").groupby("loss"):
                ax.errorbar(
                    curve["T"],
                    curve["top1_mean"],
                    yerr=curve["top1_std"].fillna(0),
                    marker="o",
                    capsize=3,
                    label=loss,
                )
            ax.set(
                xscale="log",
                xlabel="temperature T",
                ylabel="test top-1 %",
                title=f"{pair}: top-1 vs T{suffix}",
            )
            ax.legend()
            return fig

        return draw

    def pareto(points: pd.DataFrame, x: str, label: str, higher: bool) -> Callable[[Any], Any]:
        def draw(plt):
            front = pareto_front(points, x, "top1_mean", higher)
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.scatter(points[x], points["top1_mean"], alpha=0.4, color="grey", label="case")
            for loss, curve in method_fronts(points, x).items():
                ax.plot(curve[x], curve["top1_mean"], "-o", markersize=3, label=loss)
            ax.plot(front[x], front["top1_mean"], "r--", label="Pareto front")
            for _, row in front.iterrows():
                ax.annotate(row["loss"], (row[x], row["top1_mean"]), fontsize=7)
            ax.set(
                xscale="log", xlabel=label, ylabel="test top-1 %", title=f"top-1 vs {label}{suffix}"
            )
            ax.legend(fontsize=7)
            return fig

        return draw

    out = [
        (f"{_safe(pair)}-temperature.png", temperature(pair, rows))
        for pair, rows in ok[ok["T"].notna()].groupby("pair")
    ]
    for x, label, higher, name in (
        ("student_params_mean", "student params", False, "pareto-params.png"),
        ("infer_throughput_mean", "inference samples/s", True, "pareto-throughput.png"),
    ):
        points = ok.dropna(subset=[x])
        if not points.empty:
            out.append((name, pareto(points, x, label, higher)))
    return out


PREFIX_CHARS = 80  # a section's title in a file name, at most: file names have 255 bytes


def _prefix(title: str) -> str:
    """A section's ``title`` as the start of its plots' file names; a long one (a tuned section
    counting each method's trials while they differ) cut short and told apart by its digest."""
    name = _safe(title.replace(" · ", "-").replace(" ", "_"))
    if len(name) > PREFIX_CHARS:
        name = f"{name[: PREFIX_CHARS - 13]}_{stable_hash(title, 12)}"
    return f"{name}-" if name else ""


STEP_MARKERS = {"regression": ("v", "red"), "improvement": ("^", "green")}


def write_history_plots(trend: pd.DataFrame, directory: Path | str) -> list[Path]:
    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for (section, pair), rows in trend.groupby(["section", "pair"], sort=True):
        runs = rows.drop_duplicates("run").sort_values("run")
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for (metric, label, step), ax in zip(
            (("top1", "test top-1 %", "top1_step"), (SPEED, "train samples/s", "speed_step")), axes
        ):
            for method, curve in rows.groupby("method", sort=True):
                ax.errorbar(
                    curve["run"],
                    curve[f"{metric}_mean"],
                    yerr=curve[f"{metric}_std"].fillna(0),
                    marker="o",
                    capsize=3,
                    label=method,
                )
                for decision, (marker, color) in STEP_MARKERS.items():
                    hit = curve[curve[step].eq(decision)]
                    ax.scatter(
                        hit["run"],
                        hit[f"{metric}_mean"],
                        marker=marker,
                        s=120,
                        color=color,
                        zorder=3,
                    )
            ax.set_xticks(
                runs["run"],
                [f"{sha}\n{date:%Y-%m-%d}" for sha, date in zip(runs["git_sha"], runs["date"])],
                fontsize=7,
            )
            ax.set(
                ylabel=label,
                title=f"{pair}: {label} over runs" + (f" ({section})" if section else ""),
            )
        axes[0].legend(fontsize=7)
        written.append(_save(fig, out / f"{_prefix(section)}{_safe(pair)}-history.png", plt))
    return written


DIGEST_KEY = "kdbench data"  # the PNG text field holding the digest of a plot's data


def _save(fig, path: Path, plt, digest: str | None = None) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={DIGEST_KEY: digest} if digest else None)
    plt.close(fig)
    return path
