"""The report a person reads: PNG figures, CSVs for `dvc plots`, and summary.md."""
import csv

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from classweights.evaluation import CLASSES, HEADLINE_METRICS  # noqa: E402
from classweights.files import atomic_path  # noqa: E402
from classweights.statistics import confidence_label  # noqa: E402

ARM_COLOURS = {"unweighted": "tab:blue", "weighted": "tab:orange"}
CURVE_FILES = {"loss": "train/loss", "accuracy": "train/accuracy", "val_loss": "eval/loss", "val_accuracy": "eval/accuracy"}
PNG_METADATA = {"Software": None}  # no version string: same data, same bytes


def read_curves(live_dir):
    """Per-epoch training curves from a dvclive folder: {'loss': array, 'val_loss': array, ...}."""
    curves = {}
    for name, relative in CURVE_FILES.items():
        column = relative.rpartition("/")[2]  # dvclive names the value column after the metric
        with open(live_dir / "plots" / "metrics" / f"{relative}.tsv") as handle:
            curves[name] = np.array([float(row[column]) for row in csv.DictReader(handle, delimiter="\t")])
    return curves


def mean_curves(curves_by_seed):
    return {name: np.mean([c[name] for c in curves_by_seed], axis=0) for name in CURVE_FILES}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _fmt(x, digits=4):
    return f"{x:.{digits}f}"


def _p(p):
    if p is None:  # a t-test on differences with zero spread: t is undefined
        return "–"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def verdict_line(comparison):
    """The one-line answer, for the figure title and the summary."""
    difference = comparison["difference"]
    key = "minority_recall" if "minority_recall" in difference else "balanced_accuracy"
    d = difference[key]
    if d["mean"] is None:
        return f"{key.replace('_', ' ')}: {d['verdict']}"
    if "ci_low" not in d:
        return f"{key.replace('_', ' ')}: weighted − unweighted = {d['mean']:+.3f} ({d['verdict']})"
    return (f"{key.replace('_', ' ')}: weighted − unweighted = {d['mean']:+.3f} "
            f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] over {d['n_seeds']} seeds → {d['verdict']}")


def plot_recall(path, summaries, train_counts, minority, comparison):
    """Per-class test recall of both arms (± sd over seeds) beside the training class counts."""
    fig, (ax_recall, ax_counts) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.38
    for offset, arm in zip((-width / 2, width / 2), summaries):
        mean = [summaries[arm]["mean"]["per_class"][str(c)]["recall"] for c in CLASSES]
        sd = [summaries[arm]["std"]["per_class"][str(c)]["recall"] for c in CLASSES]
        ax_recall.bar(np.array(CLASSES) + offset, mean, width, yerr=sd, capsize=2, label=arm, color=ARM_COLOURS[arm])
    ax_recall.set(xticks=CLASSES, xlabel="class (* minority)", ylabel="test recall", ylim=(0, 1.05),
                  title="Per-class test recall, mean ± sd over seeds")
    ax_recall.set_xticklabels([f"{c}*" if c in minority else str(c) for c in CLASSES])
    ax_recall.legend(loc="upper left", bbox_to_anchor=(0, -0.15), ncol=2, frameon=False)
    ax_counts.bar(CLASSES, [train_counts[str(c)] for c in CLASSES],
                  color=["tab:red" if c in minority else "tab:gray" for c in CLASSES])
    ax_counts.set(xticks=CLASSES, xlabel="class", ylabel="training images", title="Training class counts")
    fig.suptitle(verdict_line(comparison), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def plot_confusions(path, confusions):
    """Row-normalised confusion matrices (summed over seeds) of both arms side by side."""
    fig, axes = plt.subplots(1, len(confusions), figsize=(10, 4.6))
    for ax, (arm, matrix) in zip(axes, confusions.items()):
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        for (i, j), rate in np.ndenumerate(rates):
            if rate >= 0.005:
                ax.text(j, i, f"{rate:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if rate > 0.5 else "black")
        ax.set(xticks=CLASSES, yticks=CLASSES, xlabel="predicted", ylabel="actual", title=f"{arm} (rows sum to 1)")
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def plot_curves(path, curves_by_arm):
    """Loss and accuracy per epoch, train and validation, mean over seeds, both arms."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for arm, curves in curves_by_arm.items():
            epochs = np.arange(1, len(curves[metric]) + 1)
            ax.plot(epochs, curves[metric], color=ARM_COLOURS[arm], label=f"{arm} train")
            ax.plot(epochs, curves[f"val_{metric}"], color=ARM_COLOURS[arm], linestyle="--", label=f"{arm} validation")
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric}, mean over seeds")
        ax.legend(fontsize=8)
    fig.text(0.5, 0.01, "The weighted arm's training loss is the weighted loss; validation loss is unweighted.",
             ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def summary_markdown(summaries, comparison, class_counts):
    """reports/summary.md: mean ± sd per arm, paired differences, McNemar per seed."""
    arms = list(summaries)
    lines = ["# Weighted vs unweighted: summary", "", f"**{verdict_line(comparison)}**", "",
             f"Seeds: {', '.join(str(s) for s in comparison['seeds'])}. Significance level α = {comparison['alpha']}. "
             f"Minority classes: {', '.join(map(str, class_counts['minority_classes'])) or 'none (balanced profile)'}.",
             "", "Training images per class: " + ", ".join(f"{c}: {n}" for c, n in class_counts["train"].items()) + ".",
             "", "## Test metrics, mean ± sd over seeds", "",
             "| metric | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for metric in HEADLINE_METRICS:
        if metric in summaries[arms[0]]["mean"]:
            cells = [f"{_fmt(summaries[a]['mean'][metric])} ± {_fmt(summaries[a]['std'][metric])}" for a in arms]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences, weighted − unweighted", "",
              f"Student-t {confidence_label(comparison['alpha'])} interval over seeds, paired t-test p, exact "
              "sign-flip p, Wilcoxon p with 6 or more seeds. The verdict's p is the larger of the t-test and "
              "sign-flip p (Holm-adjusted across the ten per-class recalls).", "",
              "| metric | mean | sd | interval | p (t-test) | p (sign-flip) | p (Wilcoxon) | p (verdict) | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    rows = list(comparison["difference"].items()) + \
        [(f"recall of class {c}", d) for c, d in comparison["per_class_recall_difference"].items()]
    for name, d in rows:
        if "ci_low" in d:
            p = _p(d["p_verdict"]) + (f" (Holm {_p(d['p_holm'])})" if "p_holm" in d else "")
            cells = [f"{d['mean']:+.4f}", _fmt(d["sd"]), f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]",
                     _p(d["p_ttest"]), _p(d["p_signflip"]), _p(d["p_wilcoxon"]) if "p_wilcoxon" in d else "–", p]
        else:
            cells = ["–" if d["mean"] is None else f"{d['mean']:+.4f}"] + ["–"] * 6
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {d['verdict']} |")
    lines += ["", "## McNemar's exact test per seed (test images only one arm gets right)", "",
              "| seed | only weighted right | only unweighted right | p |", "|---|---|---|---|"]
    for seed, m in comparison["mcnemar"].items():
        lines.append(f"| {seed} | {m['only_weighted_right']} | {m['only_unweighted_right']} | {_p(m['p_value'])} |")
    lines += ["", "Figures: [per-class recall](per_class_recall.png), [confusion matrices](confusion_matrices.png), "
              "[training curves](training_curves.png).", ""]
    return "\n".join(lines)


def write_report(folder, summaries, comparison, class_counts, confusions, curves_by_arm, predictions, y_true):
    """Write every report file into `folder` atomically (all or nothing)."""
    minority = class_counts["minority_classes"]
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        plot_recall(tmp / "per_class_recall.png", summaries, class_counts["train"], minority, comparison)
        plot_confusions(tmp / "confusion_matrices.png", confusions)
        plot_curves(tmp / "training_curves.png", curves_by_arm)
        (tmp / "summary.md").write_text(summary_markdown(summaries, comparison, class_counts))
        for arm, curves in curves_by_arm.items():
            rows = [[epoch + 1] + [f"{curves[n][epoch]:.6f}" for n in CURVE_FILES] for epoch in range(len(curves["loss"]))]
            write_csv(tmp / f"curves_{arm}.csv", ["epoch", *CURVE_FILES], rows)
        for arm, by_seed in predictions.items():
            rows = [[int(a), int(p)] for labels in by_seed.values() for a, p in zip(y_true, labels)]
            write_csv(tmp / f"predictions_{arm}.csv", ["actual", "predicted"], rows)
        write_csv(tmp / "per_class_recall.csv", ["class", *summaries],
                  [[c] + [f"{summaries[a]['mean']['per_class'][str(c)]['recall']:.6f}" for a in summaries] for c in CLASSES])
