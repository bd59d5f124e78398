"""The sweep's map: one row per grid point from its experiment's headline metrics, written
as sweep/sweep.csv, sweep/sweep.png and sweep/sweep.md (a folder no stage owns)."""
import csv
import math
from pathlib import Path

from classweights.evaluation import (ARMS, COMPARED_METRICS, COMPARISONS, HEADLINE_METRICS, LOGIT_ADJUSTED,
                                     comparison_name)
from classweights.files import atomic_path

OUT = Path("sweep")
COMPARED = (*COMPARED_METRICS, "worst_majority_recall")
PAIRS = tuple(comparison_name(arm, baseline) for arm, baseline in COMPARISONS)
STATS = ("mean", "ci_low", "ci_high", "p", "verdict")
PANELS = (("minority_recall", "(a) minority-recall gain"), ("balanced_accuracy", "(b) balanced-accuracy gain"),
          ("worst_majority_recall", "(c) cost: largest recall loss of a majority class"))
SIGNIFICANT_GAIN = "better"  # evaluate's verdict for a difference whose interval lies above 0


def headline_columns(metrics):
    """The one place that maps evaluate's headline files to CSV columns.

    metrics: {"comparison": metrics/comparison.json, "unweighted" | "weighted" |
    "logit_adjusted": metrics/<arm>.json}, each as parsed JSON (an arm that is off is absent).
    """
    comparison = metrics.get("comparison", {})
    columns = {}
    for arm in (*ARMS, LOGIT_ADJUSTED):
        for stat in ("mean", "sd"):
            for metric in HEADLINE_METRICS:
                columns[f"{arm}.{stat}.{metric}"] = metrics.get(arm, {}).get(stat, {}).get(metric)
    for pair in PAIRS:
        blocks = comparison.get(pair, {})
        for metric in COMPARED:
            for stat in STATS:
                columns[f"{pair}.{metric}.{stat}"] = blocks.get(metric, {}).get(stat)
        columns[f"{pair}.worst_majority_recall.class"] = blocks.get("worst_majority_recall", {}).get("class")
    return columns


def sweep_rows(points, records):
    """One row per grid point that has a finished experiment: the point's keys, the
    experiment's name, its headline columns. points: [{key: value}]; records: [{"name",
    "point": {key: value}, "metrics": {...}}] as matched by the caller."""
    by_point = {_key(record["point"]): record for record in records}
    rows = []
    for point in points:
        record = by_point.get(_key(point))
        if record is not None:
            rows.append({**point, "experiment": record["name"], **headline_columns(record["metrics"])})
    return rows


def _key(point):
    return tuple(sorted((k, repr(v)) for k, v in point.items()))


def write_report(rows, varied, out=OUT):
    """sweep.csv, sweep.png and sweep.md for rows; `varied`: the grid's keys."""
    out = Path(out)
    out.mkdir(exist_ok=True)
    with atomic_path(out / "sweep.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["experiment"])
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(out / "sweep.md") as tmp:
        tmp.write_text(markdown(rows, varied))
    with atomic_path(out / "sweep.png") as tmp:
        draw(rows, varied, tmp)


def _line_label(row, varied):
    """Which line of the picture a row belongs to: every varied key but the ratio."""
    return ", ".join(str(row[k]) for k in varied if k != "imbalance.ratio") or "weighted"


def _lines(rows, varied):
    lines = {}
    for row in sorted(rows, key=lambda r: float(r.get("imbalance.ratio", 0))):
        lines.setdefault(_line_label(row, varied), []).append(row)
    return lines


def draw(rows, varied, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True)
    for axis, (metric, title) in zip(axes, PANELS):
        column = f"weighted_vs_unweighted.{metric}"
        for label, line in _lines(rows, varied).items():
            ratios = [float(r["imbalance.ratio"]) for r in line]
            mean, low, high = ([_number(r[f"{column}.{s}"]) for r in line] for s in ("mean", "ci_low", "ci_high"))
            axis.plot(ratios, mean, marker="o", label=label)
            axis.fill_between(ratios, *clip_to_difference_range(low, high), alpha=0.2)
        axis.axhline(0, color="black", linestyle="--", linewidth=1)
        axis.set_xscale("log")
        axis.set_xticks(sorted({float(r["imbalance.ratio"]) for r in rows}), minor=False)
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_xlabel("imbalance ratio n_max / n_min (log scale)")
        axis.set_title(title)
    axes[0].set_ylabel("weighted − unweighted (mean over seeds, 95% CI band)")
    if rows:  # an empty map (every point failed) has no lines to name
        axes[0].legend(title="strategy", fontsize="small")
    figure.suptitle("When does class weighting pay off? Paired difference weighted − unweighted by imbalance ratio")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)


def clip_to_difference_range(low, high):
    """Interval bounds cut to [-1, 1], where every difference of two recalls or accuracies lies:
    a t interval over few seeds can reach beyond it (sweep.md says so and shows it uncut)."""
    return [max(v, -1.0) for v in low], [min(v, 1.0) for v in high]


def _beyond_range(rows):
    return any(abs(_number(row.get(f"weighted_vs_unweighted.{metric}.{bound}")) or 0) > 1
               for row in rows for metric, _ in PANELS for bound in ("ci_low", "ci_high"))


def _number(value):
    return math.nan if value is None or value == "" else float(value)


def _interval(row, column):
    mean, low, high = (_number(row[f"{column}.{s}"]) for s in ("mean", "ci_low", "ci_high"))
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def markdown(rows, varied):
    pair = "weighted_vs_unweighted"
    lines = ["# Sweep: weighted − unweighted at each grid point", "",
             "| " + " | ".join([*varied, "minority-recall gain", "balanced-accuracy gain",
                                "worst majority recall change (class)", "experiment"]) + " |",
             "|" + " --- |" * (len(varied) + 4)]
    for row in rows:
        worst = f"{_interval(row, f'{pair}.worst_majority_recall')} ({row[f'{pair}.worst_majority_recall.class']})"
        cells = [*(str(row[k]) for k in varied),
                 f"{_interval(row, f'{pair}.minority_recall')} {row[f'{pair}.minority_recall.verdict']}",
                 f"{_interval(row, f'{pair}.balanced_accuracy')} {row[f'{pair}.balanced_accuracy.verdict']}",
                 worst, row["experiment"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Intervals are 95% confidence intervals of the paired difference over seeds.", ""]
    if _beyond_range(rows):
        lines[-1:-1] = ["An interval beyond ±1 (too few seeds) is shown as computed; the map cuts its band at ±1, "
                        "the range of a difference of two recalls.", ""]
    lines += [significance_sentence(label, line) for label, line in _lines(rows, varied).items()]
    return "\n".join(lines) + "\n"


def significance_sentence(label, line):
    """Where the minority-recall gain becomes significant: the smallest ratio from which on
    every larger ratio in the sweep shows a significant gain."""
    column = "weighted_vs_unweighted.minority_recall.verdict"
    start = None
    for row in line:
        significant = row[column] == SIGNIFICANT_GAIN
        start = (start or row) if significant else None
    if start is None:
        return f"- {label}: the minority-recall gain is not significant at the largest ratio swept."
    return (f"- {label}: the minority-recall gain is significant from ratio {start['imbalance.ratio']} on "
            f"({_interval(start, 'weighted_vs_unweighted.minority_recall')} there).")
