"""``market task results T --plot out.png``: the dashboard's two charts as one figure.

Left: validation accuracy of the model each round published (``RoundView.accuracy``: receipt
``details.accuracy_model``, ``details.accuracy_after`` for older receipts); right: basis points per trainer, stacked across
rounds, with outliers and rejected updates flagged under their bar.  Drawn with
matplotlib's Agg backend (no display needed) from :class:`market_app.api.reads.MarketReader`,
so the figure shows exactly what the API serves.
"""

from __future__ import annotations

from pathlib import Path

from market.errors import ConfigError
from market_app.api.models import RoundList, TaskDetail

ROUND_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
FORMATS = (".png", ".svg", ".pdf")


def _short(a: str) -> str:
    return a[:6] + "…" + a[-4:]


def plot_task(task: TaskDetail, rounds: RoundList, out: str | Path) -> Path:
    """Write the accuracy + contribution figure of ``task`` to ``out`` (.png, .svg or .pdf)."""
    path = Path(out)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"--plot {out}: use a file name ending in {', '.join(FORMATS)}")
    if not path.parent.exists():
        raise ConfigError(f"--plot {out}: folder {path.parent} does not exist")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settled = [r for r in rounds.rounds if r.settled]
    fig, (ax_acc, ax_bps) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    fig.suptitle(f"Task {task.task_id}: {len(settled)}/{task.rounds} rounds settled", fontsize=12)

    points = [(r.round, r.accuracy) for r in settled if r.accuracy is not None]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if settled and settled[0].round == 0 and settled[0].accuracy_before is not None:
        ax_acc.plot([-1, *xs[:1]], [settled[0].accuracy_before, *ys[:1]], ls="--", color="#9aa1af")
        ax_acc.plot([-1], [settled[0].accuracy_before], "o", mfc="white", color="#9aa1af")
    ax_acc.plot(xs, ys, "o-", color="#2f6fde", lw=2.5, ms=7, mfc="white", mew=2.5)
    for x, y in points:
        ax_acc.annotate(f"{100 * y:.1f}%", (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=9)
    ax_acc.set_xticks([-1, *range(task.rounds)], ["start", *[f"round {i}" for i in range(task.rounds)]])
    ax_acc.set_ylim(0, 1.1)
    ax_acc.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax_acc.set_xlim(-1.4, max(task.rounds - 1, 0) + 0.4)
    ax_acc.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax_acc.set_title("Validation accuracy of the published model (round receipts)", fontsize=10)
    ax_acc.grid(axis="y", color="#eceef2")
    ax_acc.set_axisbelow(True)

    trainers = list(task.trainers)
    bottoms = [0] * len(trainers)
    for r in settled:
        lines = {t.address: t for t in r.trainers}
        heights = [(lines[a].bps or 0) if a in lines else 0 for a in trainers]
        ax_bps.bar(range(len(trainers)), heights, bottom=bottoms, color=ROUND_COLORS[r.round % len(ROUND_COLORS)],
                   label=f"round {r.round}", width=0.6)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    labels = []
    for j, a in enumerate(trainers):
        flags = sum(1 for r in settled for t in r.trainers if t.address == a and t.status in ("outlier", "rejected"))
        labels.append(_short(a) + (f"\nflagged ×{flags}" if flags else ""))
        ax_bps.annotate(str(bottoms[j]), (j, bottoms[j]), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax_bps.set_xticks(range(len(trainers)), labels, fontsize=8, rotation=25 if len(trainers) > 4 else 0,
                      ha="right" if len(trainers) > 4 else "center")
    for tick in ax_bps.get_xticklabels():
        if "flagged" in tick.get_text():
            tick.set_color("#d64545")
    ax_bps.set_ylabel("basis points (sum over rounds)")
    ax_bps.set_title("Contribution per trainer, stacked across rounds", fontsize=10)
    ax_bps.grid(axis="y", color="#eceef2")
    ax_bps.set_axisbelow(True)
    if settled:
        ax_bps.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
