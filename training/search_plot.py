"""The search's PNG: accuracy vs bytes against the budget, head latency, and cost per link.

Why one figure: the Table-4-style Markdown lists the numbers; the picture shows at a glance
which candidates the budget excludes, how the int8 head compares with torch, and how far the
selected partition is ahead of the rest on each link (latency and device energy).
"""

from __future__ import annotations

from pathlib import Path

from wire.atomicfile import write_atomic

ELIGIBLE = "tab:blue"
EXCLUDED = "lightgray"
CHOSEN = "tab:red"


def save_search_plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["candidates"]
    links = list(result["links"])
    names = [r["name"] for r in rows]
    n_links = max(1, len(links))
    fig = plt.figure(figsize=(4.2 * max(3, n_links), 11))
    grid = fig.add_gridspec(3, max(3, n_links), height_ratios=[1.15, 1, 1])

    ax = fig.add_subplot(grid[0, : max(3, n_links) - 1])
    floor = result["baseline_acc"] - result["budget"]
    for r in rows:
        colour = ELIGIBLE if r["eligible"] else EXCLUDED
        ax.scatter(r["nbytes"], r["accuracy"], color=colour, edgecolor="k", zorder=3, s=40)
        ax.annotate(
            f"{r['name']} ({r['bits']}b)",
            (r["nbytes"], r["accuracy"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.axhline(result["baseline_acc"], color="k", lw=0.8, label="unsplit baseline")
    ax.axhline(floor, color=CHOSEN, ls="--", lw=1, label=f"budget ({result['budget']} points)")
    ax.set_xlabel("bytes per frame (real wire payload, chosen bits)")
    ax.set_ylabel("top-1 %")
    ax.set_title("candidates at their chosen bits (grey: not eligible for selection)")
    ax.legend(fontsize=8, loc="lower right")

    ax = fig.add_subplot(grid[0, max(3, n_links) - 1])
    ys = range(len(rows))
    torch_ms = [r["head_ms_torch"] for r in rows]
    tfl_ms = [r["head_ms_tflite"] if r["head_ms_tflite"] is not None else 0.0 for r in rows]
    ax.barh([y + 0.2 for y in ys], torch_ms, height=0.4, color="tab:orange", label="torch float")
    ax.barh([y - 0.2 for y in ys], tfl_ms, height=0.4, color="tab:green", label="int8 TFLite")
    ax.set_yticks(list(ys), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"head ms, batch 1, {result['latency']['threads']} thread(s)")
    ax.set_title(f"head latency (costs use {result['latency_backend']})", fontsize=9)
    ax.legend(fontsize=7)

    for col, link in enumerate(links):
        for row, (key, unit) in enumerate((("latency_ms", "ms"), ("energy_mj", "mJ")), start=1):
            ax = fig.add_subplot(grid[row, col])
            objective = "latency" if key == "latency_ms" else "energy"
            chosen = result["chosen"].get(link, {}).get(objective)
            colours = [
                CHOSEN if r["name"] == chosen else ELIGIBLE if r["eligible"] else EXCLUDED
                for r in rows
            ]
            ax.barh(names, [r[link][key] for r in rows], color=colours, edgecolor="k", lw=0.3)
            ax.invert_yaxis()
            ax.tick_params(axis="y", labelsize=7)
            ax.set_xlabel(f"{objective} per frame, {unit}")
            pick = f"selected {chosen}" if chosen else "not an objective of this run"
            ax.set_title(f"{link} {objective}: {pick}", fontsize=9)
    fig.suptitle(
        f"Algorithm 1 search, {result['data']} / {result['model']} (red: selected partition)"
    )
    fig.tight_layout()
    path = write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path
