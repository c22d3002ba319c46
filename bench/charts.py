"""Markdown tables and PNG plots, the same for every benchmark's report. matplotlib (the `bench` extra) is
imported only when a plot is drawn."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table."""
    def line(cells: Iterable[Any]) -> str:
        return "|" + "".join(f" {cell} |" if cell != "" else " |" for cell in cells)

    return [line(header), "|---|" + "---|" * (len(header) - 1), *(line(row) for row in rows)]


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("the plots need matplotlib: pip install -e '.[bench]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(width: float = 6, height: float = 4, ncols: int = 1) -> tuple[Any, Any]:
    """A new figure and its axes (`ncols` of them side by side: a sequence)."""
    fig, ax = pyplot().subplots(ncols=ncols, figsize=(width, height))
    return fig, ax


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def grouped_bars(ax: Any, categories: Sequence[str], series: dict[str, Sequence[float]]) -> None:
    """One bar per series in each category, side by side and centred on the category's tick."""
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar([x + offset for x in range(len(categories))], values, width=width, label=label)
    ax.set_xticks(list(range(len(categories))), categories)
    ax.legend()
