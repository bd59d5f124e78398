"""The sweep's map: one row per grid point from its experiment's headline metrics, written
as sweep/sweep.csv, sweep/sweep.png and sweep/sweep.md (a folder no stage owns), and for each
setting the best remedy and whether it beats the runner-up (sweep/best.csv, in sweep.md too)."""
import csv
import math
import textwrap
from pathlib import Path

from classweights.evaluation import (ARMS, COMPARED_METRICS, COMPARISONS, HEADLINE_METRICS, LOGIT_ADJUSTED,
                                     TAU_NORMALISED, CRT, comparison_name)
from classweights.files import atomic_path
from classweights.machine import kind
from classweights.machine import line as machine_line
from classweights.params import parse_params
from classweights.ranking import SHOWN, SIGNIFICANT_GAIN, remedy_name
from classweights.report import markdown_table
from classweights.statistics import confidence_label
from orchestration.plan import NOT_READ_BY_UNWEIGHTED


OUT = Path("sweep")
COMPARED = (*COMPARED_METRICS, "worst_majority_recall")
PAIRS = tuple(comparison_name(arm, baseline) for arm, baseline in COMPARISONS)
STATS = ("mean", "ci_low", "ci_high", "p", "verdict")
PANELS = (("minority_recall", "(a) minority-recall gain"), ("balanced_accuracy", "(b) balanced-accuracy gain"),
          ("worst_majority_recall", "(c) cost: largest recall loss of a majority class"))
DECOUPLED = (TAU_NORMALISED, CRT)  # Kang et al.'s arms: only metrics/details/<arm>.json, when switched on
DECOUPLED_LABELS = {TAU_NORMALISED: "τ-normalised classifier", CRT: "cRT"}


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
    columns["alpha"] = comparison.get("alpha")
    for arm in ARMS:  # wall-clock: the only columns two runs of the same points do not repeat
        columns[f"{arm}.seconds"] = metrics.get("training_seconds", {}).get(arm, {}).get("mean")
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
            remedy = ({"remedy": remedy_name(parse_params(record["params"], record["name"]))}
                      if "params" in record else {})
            rows.append({**point, "experiment": record["name"], **remedy, **headline_columns(record["metrics"])})
    return rows


def _key(point):
    return tuple(sorted((k, repr(v)) for k, v in point.items()))


def write_report(rows, varied, out=OUT, best=(), machines=(), ranked=()):
    """sweep.csv, sweep.png and sweep.md for rows; `varied`: the grid's keys; `best`: the
    best_remedy rows (best.csv, and a table in sweep.md); `ranked`: the ranking rows (a table
    in sweep.md); `machines`: the experiments' machine records (their lines end sweep.md)."""
    out = Path(out)
    out.mkdir(exist_ok=True)
    with atomic_path(out / "sweep.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["experiment"])
        writer.writeheader()
        writer.writerows(rows)
    if best:
        with atomic_path(out / "best.csv") as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(best[0]))
            writer.writeheader()
            writer.writerows(best)
    with atomic_path(out / "sweep.md") as tmp:
        tmp.write_text(markdown(rows, varied) + best_markdown(best) + ranking_markdown(ranked)
                       + machines_markdown(machines))
    with atomic_path(out / "sweep.png") as tmp:
        draw(rows, varied, tmp)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def x_key(rows, varied):
    """The picture's x-axis: the first varied key with more than one value, a numeric one first
    (a setting key before a remedy key); with a single point, the first varied key."""
    spread = [k for k in varied if len({repr(r[k]) for r in rows}) > 1] or list(varied[:1])
    numeric = [k for k in spread if all(_is_number(r[k]) for r in rows)]
    settings = [k for k in spread if not k.startswith(NOT_READ_BY_UNWEIGHTED)]
    return next(iter([k for k in numeric if k in settings] + numeric + settings + spread), None)


def along_a_setting(rows, varied):
    """The x-axis key when the map has lines along a setting (one with two points or more);
    None for remedies at a few settings, which the picture and sweep.md show one per row."""
    x = x_key(rows, varied)
    if x is None or x.startswith(NOT_READ_BY_UNWEIGHTED):
        return None
    return x if not rows or max(map(len, _lines(rows, varied, x).values())) > 1 else None


def _line_label(row, varied, x):
    """Which line of the picture a row belongs to: every varied key but the x-axis's (the remedy
    keys said by the remedy's name where the row has it)."""
    keys = [k for k in varied if k != x and not ("remedy" in row and k.startswith(NOT_READ_BY_UNWEIGHTED))]
    remedy = [row["remedy"]] if "remedy" in row and any(k.startswith(NOT_READ_BY_UNWEIGHTED) for k in varied) else []
    return ", ".join([*(f"{k.rpartition('.')[2]}={row[k]}" for k in keys), *remedy]) or "remedy arm"


def _lines(rows, varied, x):
    """{label: rows in x order}; a categorical x keeps the grid's order."""
    order = _x_positions(rows, x)
    lines = {}
    for row in sorted(rows, key=lambda r: order[repr(r[x])] if x else 0):
        lines.setdefault(_line_label(row, varied, x), []).append(row)
    return lines


def _x_values(rows, x):
    """{repr(value): value} of the x-axis key, in grid order."""
    return {repr(r[x]): r[x] for r in rows} if x is not None else {}


def _x_positions(rows, x):
    """Where each x value sits: the value itself for numbers, 0, 1, ... in grid order otherwise."""
    values = _x_values(rows, x)
    if all(_is_number(v) for v in values.values()):
        return {k: float(v) for k, v in values.items()}
    return {k: i for i, k in enumerate(values)}


def interval_label(rows):
    """'95% CI' from the rows' evaluate.alpha; several alphas in one sweep say so."""
    alphas = {r.get("alpha") for r in rows if r.get("alpha") is not None}
    if len(alphas) == 1:
        return f"{confidence_label(alphas.pop())} CI"
    return "CI at each point's evaluate.alpha" if alphas else "CI"


def draw(rows, varied, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    x = along_a_setting(rows, varied)
    if x is None:  # remedies at a few settings: one row per remedy instead of lines
        return _draw_remedies(rows, varied, path)
    positions = _x_positions(rows, x)
    numeric = x is not None and all(_is_number(r[x]) for r in rows)
    logarithmic = (numeric and bool(positions) and min(positions.values()) > 0
                   and max(positions.values()) >= 10 * min(positions.values()))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True)
    for axis, (metric, title) in zip(axes, PANELS):
        column = f"weighted_vs_unweighted.{metric}"
        for label, line in _lines(rows, varied, x).items():
            xs = [positions[repr(r[x])] if x else 0 for r in line]
            mean, low, high = ([_number(r[f"{column}.{s}"]) for r in line] for s in ("mean", "ci_low", "ci_high"))
            axis.plot(xs, mean, marker="o", label=label)
            axis.fill_between(xs, *clip_to_difference_range(low, high), alpha=0.2)
        axis.axhline(0, color="black", linestyle="--", linewidth=1)
        if logarithmic:
            axis.set_xscale("log")
        axis.set_xticks(sorted(set(positions.values())) if numeric else list(positions.values()), minor=False)
        if numeric:
            axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        else:
            axis.set_xticklabels([str(v) for v in _x_values(rows, x).values()], rotation=20, fontsize="small")
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_xlabel(f"{x}{' (log scale)' if logarithmic else ''}")
        axis.set_title(title)
    axes[0].set_ylabel(f"remedy arm − unweighted (mean over seeds, {interval_label(rows)} band)")
    if rows:
        axes[0].legend(fontsize="small")
    figure.suptitle(f"Paired difference remedy arm − unweighted by {x}")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)


def remedy_entries(rows, varied):
    """The rows of the remedies picture, [(label, row, pair)]: each grid point's remedy arm
    against the unweighted one, and after each setting's points its post-hoc logit adjustment
    (the same for every point of a setting: it is derived from the shared unweighted arm) and the
    decoupled arms of the point that switched them on."""
    settings = [k for k in varied if not k.startswith(NOT_READ_BY_UNWEIGHTED) and len({repr(r[k]) for r in rows}) > 1]
    post_hoc = comparison_name(LOGIT_ADJUSTED, "unweighted")
    entries, groups = [], {}
    for row in rows:
        groups.setdefault(tuple(repr(row[k]) for k in settings), []).append(row)
    for group in groups.values():
        prefix = "".join(f"{k.rpartition('.')[2]}={group[0][k]}, " for k in settings)
        entries += [(prefix + _line_label(row, [k for k in varied if k not in settings], None), row,
                     "weighted_vs_unweighted") for row in group]
        if any(group[0].get(f"{post_hoc}.{metric}.mean") not in (None, "") for metric, _ in PANELS):
            entries.append((f"{prefix}post-hoc logit adjustment", group[0], post_hoc))
        for arm, label in DECOUPLED_LABELS.items():  # from the first point that switched it on
            pair = comparison_name(arm, "unweighted")
            row = next((r for r in group if any(r.get(f"{pair}.{m}.mean") not in (None, "") for m, _ in PANELS)), None)
            if row is not None:
                entries.append((f"{prefix}{label}", row, pair))
    return entries


def _draw_remedies(rows, varied, path):
    """The picture of a sweep over remedies: each remedy's difference to the unweighted arm with
    its interval, one row per remedy, each setting's post-hoc logit adjustment after its remedies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = remedy_entries(rows, varied)
    places = range(len(entries))[::-1]  # the grid's first point on top
    figure, axes = plt.subplots(1, 3, figsize=(15, 1.6 + 0.4 * len(entries)), sharey=True)
    for axis, (metric, title) in zip(axes, PANELS):
        mean, low, high = ([_number(row[f"{pair}.{metric}.{s}"]) for _, row, pair in entries]
                           for s in ("mean", "ci_low", "ci_high"))
        axis.hlines(places, *clip_to_difference_range(low, high), linewidth=3, alpha=0.4)
        axis.plot(mean, places, "o")
        axis.axvline(0, color="black", linestyle="--", linewidth=1)
        axis.set_xlabel(f"mean over seeds, {interval_label(rows)}")
        axis.set_title(textwrap.fill(title, 26))  # the long row labels leave the panels narrow
    axes[0].set_yticks(list(places), [label for label, _, _ in entries], fontsize="small")
    figure.suptitle("Paired difference remedy − unweighted, one remedy per row")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)


def machines_markdown(machines):
    """Where the map's experiments were made: one `Machine: …` line per machine, with how many
    experiments each made, and a warning when they are of more than one kind."""
    if not machines:
        return ""
    counts = {}
    for record in machines:
        line = machine_line(record) if record else "Machine: not recorded (made before runs recorded it)."
        counts[line] = counts.get(line, 0) + 1
    if len(counts) == 1:
        return f"\n{next(iter(counts))}\n"
    lines = [f"{line[:-1]} ({count} experiment{'s' if count > 1 else ''})." for line, count in counts.items()]
    kinds = {repr(kind(record)) for record in machines if record}
    if len(kinds) > 1 or None in machines:
        lines.append("These experiments come from machines of different kinds (or unrecorded ones): their "
                     "numbers can differ for that reason alone (docs/statistics.md).")
    return "\n" + "\n\n".join(lines) + "\n"


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


UNSETTLED_MARK = "†"  # an interval that excludes 0 under a verdict of no significant difference


def _verdict_cell(row, column):
    """'interval verdict', marked † when the interval excludes 0 but the verdict is not better or
    worse: the verdict also needs the exact sign-flip test, which few seeds cannot pass."""
    low, high = (_number(row[f"{column}.{s}"]) for s in ("ci_low", "ci_high"))
    verdict = row[f"{column}.verdict"]
    unsettled = (low > 0 or high < 0) and verdict not in ("better", "worse")
    return f"{_interval(row, column)} {verdict}{f' {UNSETTLED_MARK}' if unsettled else ''}"


def _training_fit_cell(row):
    """'0.981 → 0.975': the unweighted and the remedy arm's accuracy on their own training split."""
    fits = [_number(row.get(f"{arm}.mean.train_accuracy")) for arm in ARMS]
    return "–" if any(math.isnan(fit) for fit in fits) else " → ".join(f"{fit:.3f}" for fit in fits)  # older runs: none


def markdown(rows, varied):
    pair = "weighted_vs_unweighted"
    named = ["remedy"] if rows and "remedy" in rows[0] else []  # the remedy's name, when the rows have it
    table = []
    for row in rows:
        worst = f"{_interval(row, f'{pair}.worst_majority_recall')} ({row[f'{pair}.worst_majority_recall.class']})"
        precision = (f"{_interval(row, f'{pair}.minority_precision')} {row[f'{pair}.minority_precision.verdict']}"
                     if row.get(f"{pair}.minority_precision.mean") not in (None, "") else "–")  # older runs: none
        table.append([*(row[k] for k in [*varied, *named]),
                      _verdict_cell(row, f"{pair}.minority_recall"), _verdict_cell(row, f"{pair}.balanced_accuracy"),
                      worst, precision, _training_fit_cell(row), row["experiment"]])
    lines = ["# Sweep: remedy arm − unweighted at each grid point", ""]
    lines += markdown_table([*varied, *named, "minority-recall gain", "balanced-accuracy gain",
                             "worst majority recall change (class)", "minority-precision change",
                             "training-split accuracy (unweighted → remedy)", "experiment"], table)
    lines += ["", f"Intervals are {interval_label(rows)}s of the paired difference over seeds.", ""]
    if any(UNSETTLED_MARK in line for line in lines):
        lines[-1:-1] = [f"{UNSETTLED_MARK} The interval excludes 0, yet the verdict is no significant difference: a "
                        "verdict also needs the exact sign-flip test below α, and with n seeds its p cannot fall "
                        "below 2/2ⁿ (2 seeds: 0.5; 6 seeds are the fewest for α = 0.05; README \"Reading the "
                        "verdicts\").", ""]
    if _beyond_range(rows):
        lines[-1:-1] = ["An interval beyond ±1 (too few seeds) is shown as computed; the map cuts its band at ±1, "
                        "the range of a difference of two recalls.", ""]
    x = along_a_setting(rows, varied)
    if x is not None:  # remedies at a few settings: the tables below say it instead
        lines += [significance_sentence(label, line, x) for label, line in _lines(rows, varied, x).items()]
    return "\n".join(lines) + "\n"


def significance_sentence(label, line, x="imbalance.ratio"):
    """Where the minority-recall gain becomes significant: the first x value from which on
    every later one in the sweep shows a significant gain."""
    column = "weighted_vs_unweighted.minority_recall.verdict"
    start = None
    for row in line:
        significant = row[column] == SIGNIFICANT_GAIN
        start = (start or row) if significant else None
    if start is None:
        return f"- {label}: the minority-recall gain is not significant at the last {x} swept."
    return (f"- {label}: the minority-recall gain is significant from {x} = {start[x]} on "
            f"({_interval(start, 'weighted_vs_unweighted.minority_recall')} there).")


def ranking_markdown(rows):
    """The every-remedy table of sweep.md ('' without rows)."""
    if not rows:
        return ""
    setting_keys = [k for k in rows[0] if k not in ("remedy", "seeds", "rank", "seconds") and not k.startswith(SHOWN)]

    def cell(row, metric):
        mean, sd = row[f"{metric}.mean"], row[f"{metric}.sd"]
        return "–" if mean is None else f"{mean:.3f}" + ("" if sd is None else f" ± {sd:.3f}")

    lines = ["", "## Every remedy of each setting, by balanced accuracy", "",
             "Mean ± sd over the seeds all of a setting's remedies share. Minority precision is the first cost "
             "(false alarms). Seconds per training: the mean wall-clock fit time of the trainings the remedy needs, "
             "on the machine that made them (the post-hoc adjustment trains nothing of its own: the unweighted "
             "trainings').", ""]
    lines += markdown_table([*setting_keys, "rank", "remedy", "balanced accuracy", "minority recall",
                             "minority precision", "seconds per training", "seeds"],
                            [[*(row[k] for k in setting_keys), row["rank"], row["remedy"],
                              cell(row, "balanced_accuracy"), cell(row, "minority_recall"),
                              cell(row, "minority_precision"),
                              "–" if row.get("seconds") is None else f"{row['seconds']:.1f}", row["seeds"]]
                             for row in rows])
    return "\n".join(lines) + "\n"


def best_markdown(best):
    """The best-remedy table of sweep.md ('' without rows)."""
    if not best:
        return ""
    setting_keys = [k for k in best[0] if k not in ("metric", "best", "best_mean", "runner_up", "runner_up_mean",
                                                    "difference", "ci_low", "ci_high", "p_holm", "beats_runner_up",
                                                    "remedies", "seeds", "alpha")]
    level = interval_label(best)
    lines = ["", "## The best remedy of each setting", "",
             f"Ranked by the mean over the seeds all of a setting's remedies share (their unweighted trainings "
             f"are the same). \"Beats the runner-up\": the paired difference best − runner-up is significant at "
             f"α, its p Holm-adjusted over the comparisons of the best with every other remedy.", ""]
    table = []
    for row in best:
        if row["difference"] is None:
            interval = "not computable"
        elif row["ci_low"] is None:
            interval = f"{row['difference']:+.3f} (no interval with one seed)"
        else:
            interval = f"{row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
        p = "–" if row["p_holm"] is None else f"{row['p_holm']:.3g}"
        table.append([*(row[k] for k in setting_keys), row["metric"], f"{row['best']} ({row['best_mean']:.3f})",
                      f"{row['runner_up']} ({row['runner_up_mean']:.3f})", interval, p,
                      "yes" if row["beats_runner_up"] else "no"])
    lines += markdown_table([*setting_keys, "metric", "best (mean)", "runner-up (mean)",
                             f"best − runner-up [{level}]", "p (Holm)", "beats the runner-up"], table)
    return "\n".join(lines) + "\n"
