"""The leaderboard as a paper prints it, in LaTeX (``kdbench report --format latex``).

One ``table`` float per setting (``kdbench.publish.summary.sections``): methods × pairs, booktabs
rules, the teacher and ``ce`` (the student trained alone) on top with a ``\\midrule`` after
them, cells "mean $\\pm$ std" of **test** top-1 over seeds, and, as in every kdbench table, the
temperature of a cell (its subscript) and the bold best method per pair chosen on
**validation** top-1 (``kdbench.publish.summary``), never on test. Where the reference lists a pair
(CIFAR-100, ``kdbench.reference``), its published number stands beside ours. The caption names
the data set, recipe, epochs, seeds, the selection rule and the published sources; the label is
``tab:kdbench`` (``tab:kdbench-<setting>`` per setting when several).

pandas' ``Styler.to_latex`` writes the tables (with jinja2); the paper's
preamble needs ``\\usepackage{booktabs}``. ``escape(text)`` escapes names and notes; a comment
line holds what comes from records on that one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from kdbench.publish.convergence import leaderboard_summary
from kdbench.publish.markdown import leaderboards
from kdbench.publish.summary import SELECTION, provenance_line, sections
from kdbench.publish.tables import CellStyle, fmt_top1
from kdbench.spec import pair_name

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "→": r"$\to$",
    "Δ": r"$\Delta$",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "·": r"$\cdot$",
    "×": r"$\times$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "\n": " ",
    "\r": " ",
}
TOP_ROWS = ("teacher", "ce")


def escape(text: object) -> str:
    """Plain text → LaTeX: special characters escaped, the report's symbols as math, on one
    line (values from records are data, never markup)."""
    return "".join(SPECIAL.get(c, c) for c in str(text))


def style(seeds: int) -> CellStyle:
    """Cells: ``mean $\\pm$ std`` of test top-1 (``(k/n)`` where only k of the run's n seeds
    finished; the status, N/A, diverged or error, where none did); the temperature as a
    subscript; the best method in bold (math included)."""

    def top1(row: pd.Series) -> str:
        n = int(row["n"])
        if n == 0:
            return escape(fmt_top1(row))
        mean, std = row["top1_mean"], row["top1_std"]
        text = f"{mean:.2f}" if pd.isna(std) else rf"{mean:.2f} $\pm$ {std:.2f}"
        return text if n >= seeds else f"{text} ({n}/{seeds})"

    return CellStyle(
        top1=top1,
        temperature=lambda t: rf"\,\textsubscript{{$T$={escape(t)}}}",
        best=lambda cell: rf"{{\bfseries\boldmath {cell}}}",
        near_chance=" (near chance)",
    )


def _columns(board: pd.DataFrame) -> pd.DataFrame:
    """method column → index; "<pair> published" columns → (pair, published) under the pair."""
    board = board.set_index("method")
    board.index = board.index.map(escape)
    if not any(c.endswith(" published") for c in board.columns):
        board.columns = board.columns.map(escape)
        return board
    board.columns = pd.MultiIndex.from_tuples(
        [
            (escape(c.removesuffix(" published")), "published")
            if c.endswith(" published")
            else (escape(c), "ours")
            for c in board.columns
        ]
    )
    return board


def _setting(frame: pd.DataFrame, part: pd.DataFrame, key: str) -> str:
    """A spec field of a section: its own value where the setting varies, else the run's."""
    values = (part if key in part else frame)[key].dropna().unique()
    return ", ".join(str(v) for v in sorted(values, key=str))


def caption(
    frame: pd.DataFrame, part: pd.DataFrame, title: str, published: pd.DataFrame | None
) -> str:
    seeds = sorted(frame["seed"].dropna().unique())
    teacher_epochs = _setting(frame, part, "teacher_epochs")
    text = (
        f"Test top-1 (%) on {_setting(frame, part, 'dataset')}"
        f"{f' ({title})' if title else ''}: mean ± std over {len(seeds)} seed(s) "
        f"({', '.join(map(str, seeds))}); recipe {_setting(frame, part, 'recipe')}, "
        f"{_setting(frame, part, 'epochs')} epochs (teacher {teacher_epochs}). "
        f"The temperature of each cell (subscript) and the best method per pair (bold) are "
        f"chosen on {SELECTION}, never on test; (k/n): only k of the n seeds finished; "
        f"N/A: the method does not apply to the pair. Teacher and ce (the student trained "
        f"alone) on top."
    )
    if published is not None:
        pairs = set(part["pair"])
        shown = published[
            [pair_name(t, s) in pairs for t, s in zip(published["teacher"], published["student"])]
        ]
        if len(shown):
            text += " Published: " + "; ".join(shown["source"].unique()) + "."
    return escape(text)


def _midrule_after_top_rows(latex: str, board: pd.DataFrame) -> str:
    """booktabs ``\\midrule`` between the teacher/ce rows and the methods."""
    top = [m for m in board.index if m in TOP_ROWS]
    if not top or len(top) == len(board):
        return latex
    row = re.compile(rf"^{re.escape(top[-1])} &.*\\\\$", re.MULTILINE)
    return row.sub(lambda m: m.group(0) + "\n\\midrule", latex, count=1)


def table(board: pd.DataFrame, caption_text: str, label: str) -> str:
    """One leaderboard (``leaderboard(…, style=style(seeds))``) as a booktabs ``table`` float."""
    board = _columns(board)
    styler = board.style.hide(names=True, axis="index")
    latex = styler.to_latex(
        hrules=True,
        multicol_align="c",
        position="t",
        position_float="centering",
        column_format="l" + "c" * board.shape[1],
        caption=caption_text,
        label=label,
    )
    return _midrule_after_top_rows(latex, board)


def render(
    frame: pd.DataFrame, published: pd.DataFrame | None = None, notes: Sequence[str] = ()
) -> str:
    """Every section's leaderboard as LaTeX, under comments saying what produced it."""
    summary = leaderboard_summary(frame)
    boards = leaderboards(frame, summary, published, style(frame["seed"].nunique()))
    comments = [
        "kdbench report --format latex: needs \\usepackage{booktabs}",
        provenance_line(frame),
        *notes,
    ]
    blocks = ["".join(f"% {' '.join(str(line).splitlines())}\n" for line in comments)]
    for (title, part), (_, board, _) in zip(sections(summary), boards):
        slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
        has_ref = any(c.endswith(" published") for c in board.columns)
        blocks.append(
            table(
                board,
                caption(frame, part, title, published if has_ref else None),
                f"tab:kdbench-{slug}" if slug else "tab:kdbench",
            )
            + "\n"
        )
    return "".join(blocks)
