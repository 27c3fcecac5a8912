"""docs/benchmarks.png: ours ÷ distribution per row, throughput above and server CPU below."""

from __future__ import annotations

from pathlib import Path

from .report_tables import Row, num_text, ratio
from .workloads import ServerResult


def plot(path: Path, all_rows: list[Row], ours: ServerResult, theirs: ServerResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed = [row for row in all_rows if row.higher_is_better and ratio(row, ours, theirs) is not None]
    cpu = [row for row in all_rows if row.is_cpu and ratio(row, ours, theirs) is not None]
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(11, 1.6 + 0.5 * (len(speed) + len(cpu))),
        gridspec_kw={"height_ratios": [max(len(speed), 1), max(len(cpu), 1)]},
    )
    fig.suptitle(f"{ours.label} ÷ distribution 2.8.2, same clients, loopback, 2 cores", fontsize=13)

    def short(row: Row) -> str:
        return (
            row.label.split(":")[0].replace("Server CPU per GiB moved, ", "")
            if row.key.startswith(("push", "pull", "cpu"))
            else row.label
        )

    def panel(ax: object, chosen_rows: list[Row], title: str, lower_better: bool) -> None:
        from matplotlib.axes import Axes

        assert isinstance(ax, Axes)
        values = [ratio(row, ours, theirs) or 0.0 for row in chosen_rows]
        ys = list(range(len(chosen_rows)))[::-1]
        colors = []
        for row, value in zip(chosen_rows, values, strict=True):
            good = value <= 1.0 if lower_better else value >= 1.0
            below_floor = row.floor is not None and value < row.floor
            colors.append("#c0392b" if below_floor else "#2e8b57" if good else "#e67e22")
        ax.barh(ys, values, color=colors, height=0.6)
        top_x = max([*values, 1.0, *[row.floor or 0 for row in chosen_rows]]) * 1.5
        ax.set_xlim(0, top_x)
        ax.axvline(1.0, color="#555555", linestyle="--", linewidth=1, label="parity (1.0)")
        floor_drawn = False
        for y, row in zip(ys, chosen_rows, strict=True):
            if row.floor is not None:
                ax.plot(
                    [row.floor, row.floor],
                    [y - 0.42, y + 0.42],
                    color="#c0392b",
                    linewidth=2.5,
                    label=None if floor_drawn else "floor from the issue",
                )
                floor_drawn = True
        for y, value, row in zip(ys, values, chosen_rows, strict=True):
            mine, other = row.value(ours), row.value(theirs)
            ax.text(
                value + top_x * 0.01,
                y,
                f"{value:.2f}x   ours {num_text(mine, row.unit)} / distribution {num_text(other, row.unit)} {row.unit}",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(ys, [short(row) for row in chosen_rows], fontsize=9)
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)

    panel(top, speed, "Throughput, ours ÷ distribution (higher is better)", lower_better=False)
    panel(bottom, cpu, "Server CPU seconds per GiB moved, ours ÷ distribution (lower is better)", lower_better=True)
    handles, labels = top.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
