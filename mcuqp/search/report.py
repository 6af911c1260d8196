"""pareto.png: accuracy against flash and against instructions for every trial, budgets drawn."""
from __future__ import annotations

from pathlib import Path


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, accuracy) points no other point beats on both (lower cost, higher accuracy)."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def plot_pareto(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = summary["trials"]
    budget = summary["budget"]
    best = summary.get("best")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = [("flash_bytes", "flash (KiB, linked image)", 1024.0, budget["flash_bytes"]),
              ("instructions_per_inference", "instructions per inference (millions, QEMU)", 1e6,
               budget["instructions_per_inference"])]
    for ax, (key, label, scale, limit) in zip(axes, panels):
        rows = [t for t in trials if t[key] is not None]
        for feasible, style in ((False, dict(marker="x", color="0.6", label="over budget")),
                                (True, dict(marker="o", color="tab:blue", label="fits"))):
            pts = [(t[key] / scale, t["accuracy"] * 100) for t in rows if t["feasible"] == feasible]
            if pts:
                ax.scatter(*zip(*pts), s=22, **style)
        front = pareto_front([(t[key] / scale, t["accuracy"] * 100) for t in rows if t["feasible"]])
        if front:
            ax.step(*zip(*front), where="post", color="tab:blue", lw=1, alpha=0.6, label="Pareto front (fits)")
        if limit is not None:
            ax.axvline(limit / scale, color="tab:red", ls="--", lw=1, label="budget")
        if best is not None and best[key] is not None:
            ax.scatter([best[key] / scale], [best["accuracy"] * 100], marker="*", s=160, color="tab:orange",
                       zorder=5, label=f"best (trial {best['number']})")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%, int8, validation)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"mcuqp search on {summary['board']}: {len(trials)} trials "
                 f"(flash budget {budget['flash_bytes']:,} B, RAM {budget['ram_bytes']:,} B)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
