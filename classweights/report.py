"""The report a person reads: summary.md and PNG figures, every one saying what was run."""
import csv

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no display backend
from matplotlib.ticker import MaxNLocator

from classweights.evaluation import (CALIBRATION_BINS, TEST_METRICS, TRAIN_FIT_METRICS, LOGIT_ADJUSTED, LOWER_IS_BETTER,
                                     TAU_NORMALISED, TIE_TOLERANCE, decoupled_labels, describe_tau)
from classweights.files import atomic_path, read_json
from classweights.machine import line as machine_line
from classweights.params import IMAGENET_SIZE, IMAGENET_SIZES
from classweights.statistics import confidence_label
from classweights.remedy import Remedy

ARM_COLOURS = {"unweighted": "tab:blue", "weighted": "tab:orange", LOGIT_ADJUSTED: "tab:green"}
SPARE_COLOURS = ("tab:purple", "tab:brown", "tab:pink")  # for arms added later
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")  # Keras' history keys the figure draws
PNG_METADATA = {"Software": None}  # no version string: same data, same bytes


def _plural(n, word):
    return f"{n} {word}{'s' * (n != 1)}"


def describe_run(params, train_counts=None):
    """What was run, in one line: source, imbalance, weights (beta, how applied), epochs, seeds.
    train_counts ({class: training images}): with profile none, the data's own imbalance is
    described by its measured ratio, largest / smallest class."""
    imbalance = params.imbalance
    shape = (_own_imbalance(train_counts) if imbalance.profile == "none"
             else f"{imbalance.profile} imbalance, ratio {imbalance.ratio:g}")
    seeds = params.train.seeds
    return (f"{_source(params.data)}, {shape}; "
            f"{_remedy(params)}; {_model(params.model)}"
            f"{_plural(params.train.epochs, 'epoch')}, {_plural(len(seeds), 'seed')}")


def measured_ratio(counts):
    """Largest / smallest class count (inf when a class has none)."""
    smallest = min(counts.values())
    return max(counts.values()) / smallest if smallest else float("inf")


def _own_imbalance(train_counts):
    """The data's own counts (imbalance.profile none), by their measured ratio."""
    if not train_counts:
        return "the data's own class counts"
    ratio = measured_ratio(train_counts)
    return "no imbalance" if ratio == 1 else f"own imbalance, ratio {ratio:.3g} (largest / smallest class)"


def _source(data):
    """The source, and for your own data where it lies: 'folder data/input/flowers'."""
    return f"{data.source} {data.path}" if data.source in ("folder", "npz", "csv") else data.source


def _model(model):
    """The backbone, unless it is the default cnn: 'ResNet-20, ', 'keras:MobileNetV3Small (imagenet
    weights, frozen, its own preprocessing), '."""
    if model.backbone == "cnn":
        return ""
    if model.backbone == "resnet":
        return f"ResNet-{model.resnet_depth}, "
    if model.backbone == "mlp":
        return f"MLP {'-'.join(map(str, model.mlp_hidden))}, "
    if model.backbone.startswith("keras:"):
        weights = {"imagenet": "imagenet weights", None: "random initial weights"}.get(model.weights, model.weights)
        tuning = "frozen" if model.trainable == "head" else "fine-tuned"
        size = IMAGENET_SIZES.get(model.backbone.removeprefix("keras:"), IMAGENET_SIZE)
        images = (f"images resized to {size} × {size}" if model.weights == "imagenet"
                  else "images at their size (resized up to its smallest input if smaller)")
        return f"{model.backbone} ({weights}, {tuning}; {images} and preprocessed as it expects), "
    return f"{model.backbone}, "


def examples_word(params):
    """What one input is called in the report: "rows" of feature vectors (a csv, or the mlp, which
    takes nothing else), else "images"."""
    return "rows" if params.data.source == "csv" or params.model.backbone == "mlp" else "images"


def _tick_labels(ax, axis, names, marked=()):
    """Class names as tick labels (a * after a marked one); long or many x labels stand upright, so
    that "T-shirt/top" and "Ankle boot" keep clear of each other (tests/test_report.py measures it)."""
    labels = [f"{name}*" if name in marked else name for name in names]
    turned = axis == "x" and (max(map(len, labels)) > 3 or len(labels) > 12)
    getattr(ax, f"set_{axis}ticks")(range(len(names)))
    getattr(ax, f"set_{axis}ticklabels")(labels, rotation=90 if turned else 0, fontsize=8)


def _remedy(params):
    """The remedy arm as describe_run says it: today's weighted arm in the words it always had."""
    remedy = Remedy.of(params)
    return remedy.weights_phrase if remedy.plain_fit else f"remedy {remedy.phrase}"


def arm_labels(params):
    """How each arm is named in tables and legends: the weighted (remedy) arm says its loss and how its
    weights were applied."""
    labels = {"unweighted": "unweighted", "weighted": Remedy.of(params).label,
              LOGIT_ADJUSTED: f"logit-adjusted ({describe_tau(params.evaluate.logit_adjustment_tau)})"}
    return {**labels, **decoupled_labels(params.evaluate)}


def _colours(arms):
    spare = iter(SPARE_COLOURS)
    return {arm: ARM_COLOURS.get(arm) or next(spare) for arm in arms}


def read_curves(history_path):
    """Per-epoch training curves from a training's history.json: {'loss': array, 'val_loss': array, ...}."""
    history = read_json(history_path)
    return {name: np.array(history[name]) for name in CURVES}


def mean_curves(curves_by_seed):
    return {name: np.mean([c[name] for c in curves_by_seed], axis=0) for name in CURVES}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def markdown_table(header, rows):
    """A Markdown table's lines: the header, its rule, one line per row (cells as text). The one
    table writer of the run report and the sweep's (orchestration/sweep_report.py)."""
    return ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(str, row)) + " |" for row in rows)]


def _fmt(x, digits=4):
    return f"{x:.{digits}f}"


def _p(p):
    if p is None:  # a t-test on differences with zero spread: t is undefined
        return "–"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _key_metric(comparison):
    return "minority_recall" if "minority_recall" in comparison["difference"] else "balanced_accuracy"


def _settle(d):
    settle = d.get("seeds_to_settle")
    return f"about {settle} seeds would settle it" if settle else "more seeds would not settle it"


def _firmness(d):
    """'' for a firm verdict; ' (borderline: about 12 seeds would settle it)' for one near the line."""
    return f" (borderline: {_settle(d)})" if d.get("borderline") else ""


def _verdict_cell(d):
    """The verdict, and for a borderline one why and what would settle it."""
    if not d.get("borderline"):
        return d["verdict"]
    return f"{d['verdict']} (borderline: {'; '.join(d['borderline'])}; {_settle(d)})"


def _interval(d, digits=3):
    """'+0.109 [+0.091, +0.126] → better', or the difference alone when one seed allows no test; a
    borderline verdict says so (docs/statistics.md)."""
    if d["mean"] is None:
        return d["verdict"]
    if "ci_low" not in d:
        return f"{d['mean']:+.{digits}f} ({d['verdict']})"
    return (f"{d['mean']:+.{digits}f} [{d['ci_low']:+.{digits}f}, {d['ci_high']:+.{digits}f}] → {d['verdict']}"
            f"{_firmness(d)}")


def verdict_lines(comparisons, labels):
    """One line per comparison: the key metric's paired difference, interval and verdict."""
    lines = []
    for c in comparisons.values():
        key = _key_metric(c)
        lines.append(f"{key.replace('_', ' ')}: {labels[c['arm']]} − {labels[c['baseline']]} = "
                     f"{_interval(c['difference'][key])}")
    return lines


def headline_lines(comparisons, labels):
    """The summary's headline, one line per comparison: the key metric's verdict line, then its
    first cost, the change in the minority classes' precision (false alarms), where there are any."""
    lines = []
    for line, comparison in zip(verdict_lines(comparisons, labels), comparisons.values()):
        cost = comparison["difference"].get("minority_precision")
        lines.append(f"**{line}**" if cost is None else
                     f"**{line}**; first cost, minority precision: {_interval(cost)}")
    return lines


def _title(description, comparisons, labels):
    seeds = len(next(iter(comparisons.values()))["seeds"])
    return "\n".join([description] + verdict_lines(comparisons, labels)) + f"  (paired over {seeds} seeds)"


def _save(fig, path, title):
    """The PNG also carries its title as text (a PNG 'Title' field), for tools and tests."""
    fig.savefig(path, dpi=100, metadata={**PNG_METADATA, "Title": title})


SIGNIFICANT_MARKS = {"better": "▲", "worse": "▼"}


def _significance_marks(comparisons, baseline="unweighted"):
    """{arm: {class name: ▲ or ▼}}: the per-class recalls significantly above or below the
    baseline's (the summary's Holm-adjusted verdicts)."""
    marks = {}
    for c in (comparisons or {}).values():
        if c["baseline"] == baseline:
            marks[c["arm"]] = {name: SIGNIFICANT_MARKS[d["verdict"]]
                               for name, d in c["per_class_recall_difference"].items() if d["verdict"] in SIGNIFICANT_MARKS}
    return marks


def plot_recall(path, summaries, train_counts, minority, labels, title, comparisons=None, examples="images"):
    """Per-class test recall of every arm (± sd over seeds) beside the training class counts; a
    ▲ / ▼ above an arm's bar: its recall is significantly above / below the unweighted arm's.
    train_counts: {class name: count} in class order; minority: class names."""
    names = list(train_counts)
    positions = np.arange(len(names))
    fig = Figure(figsize=(12, 5.6 + 0.07 * max(map(len, names))), layout="constrained")
    ax_recall, ax_counts = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.4, 1]})
    colours = _colours(summaries)
    marks = _significance_marks(comparisons)
    width = 0.8 / len(summaries)
    for i, arm in enumerate(summaries):
        offset = (i - (len(summaries) - 1) / 2) * width
        mean = [summaries[arm]["mean"]["per_class"][name]["recall"] for name in names]
        sd = [summaries[arm]["std"]["per_class"][name]["recall"] for name in names]
        ax_recall.bar(positions + offset, mean, width, yerr=sd, capsize=1.5, label=labels.get(arm, arm),
                      color=colours[arm], error_kw={"elinewidth": 0.8})
        for k, name in enumerate(names):
            if name in marks.get(arm, {}):
                ax_recall.text(positions[k] + offset, min(mean[k] + sd[k], 1) + 0.02, marks[arm][name], ha="center",
                               va="bottom", fontsize=9, color=colours[arm])
    ax_recall.set(xlabel="class (* minority)", ylabel="test recall", ylim=(0, 1.1),
                  title="Per-class test recall, mean ± sd over seeds; ▲ / ▼ significantly above / below unweighted")
    ax_recall.title.set_fontsize(10)
    _tick_labels(ax_recall, "x", names, minority)
    fig.legend(*ax_recall.get_legend_handles_labels(), loc="outside lower center", ncol=len(summaries), frameon=False)
    ax_counts.bar(positions, list(train_counts.values()),
                  color=["tab:red" if name in minority else "tab:gray" for name in names])
    ax_counts.set(xlabel="class (red: minority)", ylabel=f"training {examples}", title="Training class counts")
    ax_counts.title.set_fontsize(10)
    _tick_labels(ax_counts, "x", names)
    fig.suptitle(title, fontsize=9)
    _save(fig, path, title)
    return fig


def plot_confusions(path, confusions, labels, title, class_names):
    """Row-normalised confusion matrices (summed over seeds) of every arm side by side."""
    longest = max(map(len, class_names))  # room for the y labels beside each panel and the x labels below
    fig = Figure(figsize=(3.7 * len(confusions) + 1 + 0.06 * longest * len(confusions),
                          4.4 + 0.18 * title.count("\n") + 0.07 * longest), layout="constrained")
    axes = fig.subplots(1, len(confusions), squeeze=False)
    for ax, (arm, matrix) in zip(axes[0], confusions.items()):
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        for (i, j), rate in np.ndenumerate(rates):
            if rate >= 0.005:
                ax.text(j, i, f"{rate:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if rate > 0.5 else "black")
        ax.set(xlabel="predicted", ylabel="actual", title=f"{labels[arm]} (rows sum to 1)")
        _tick_labels(ax, "x", class_names)
        _tick_labels(ax, "y", class_names)
        ax.title.set_fontsize(9)
    fig.colorbar(image, ax=axes[0], shrink=0.7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path, title)
    return fig


def plot_curves(path, curves_by_arm, labels, title):
    """Loss and accuracy per epoch, train and validation, mean over seeds, trained arms."""
    fig = Figure(figsize=(11, 4.8))
    axes = fig.subplots(1, 2)
    colours = _colours(curves_by_arm)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for arm, curves in curves_by_arm.items():
            epochs = np.arange(1, len(curves[metric]) + 1)
            ax.plot(epochs, curves[metric], color=colours[arm], marker=".", label=f"{labels[arm]} train")
            ax.plot(epochs, curves[f"val_{metric}"], color=colours[arm], marker=".", linestyle="--",
                    label=f"{labels[arm]} validation")
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric}, mean over seeds")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    fig.text(0.5, 0.01, "A weighted loss arm's training loss is the weighted loss; validation loss is unweighted. "
             "The logit-adjusted arm is not trained: it reuses the unweighted arm's models.", ha="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _save(fig, path, title)


def plot_reliability(path, reliability, summaries, labels, title, examples="images"):
    """One reliability diagram per arm: test accuracy against mean top-class confidence in the
    CALIBRATION_BINS equal-width confidence bins, every seed's test examples pooled, beside the
    diagonal a calibrated model would follow; under it each bin's share of the images.
    reliability: {arm: (count, mean confidence, accuracy) per bin} (evaluation.calibration_bins)."""
    fig = Figure(figsize=(3.6 * len(reliability) + 0.6, 5.2), layout="constrained")
    axes = fig.subplots(2, len(reliability), squeeze=False, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    colours = _colours(reliability)
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    for (ax, ax_share), (arm, (count, confidence, accuracy)) in zip(axes.T, reliability.items()):
        full = count > 0
        ax.bar(edges[:-1][full], accuracy[full], width=1 / CALIBRATION_BINS, align="edge", color=colours[arm],
               edgecolor="black", linewidth=0.5, label="accuracy in the bin")
        ax.plot(confidence[full], accuracy[full], "k.", markersize=4, label="at the bin's mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="calibrated")
        ece = summaries[arm]["mean"]["ece"], summaries[arm]["std"]["ece"]
        ax.set(ylim=(0, 1), xlim=(0, 1), ylabel="test accuracy",
               title=f"{labels[arm]}\nECE {_fmt(ece[0])} ± {_fmt(ece[1])} (mean ± sd over seeds)")
        ax.title.set_fontsize(9)
        ax_share.bar(edges[:-1], count / max(count.sum(), 1), width=1 / CALIBRATION_BINS, align="edge",
                     color=colours[arm])
        ax_share.set(xlabel="top-class confidence", ylabel=f"share of {examples}", ylim=(0, 1))
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    _save(fig, path, title)


def _adjustment_phrase(evaluate, tuned_tau):
    """What the logit-adjusted arm did: its τ, or how τ was tuned and what each seed got."""
    if tuned_tau is not None:
        grid = ", ".join(f"{tau:g}" for tau in sorted(set(evaluate.logit_adjustment_tau_grid)))
        chosen = ", ".join(f"seed {seed} τ = {tau:g}" for seed, tau in tuned_tau.items())
        return ("logit adjustment with the training class frequencies as prior and τ tuned on the validation "
                "split, per seed: the τ of {" + grid + "} whose adjustment of the unweighted model's validation "
                f"predictions has the highest balanced accuracy (a tie, within {TIE_TOLERANCE:g}, goes to the "
                f"smaller τ; the test split is never used); chosen: {chosen}")
    tau = evaluate.logit_adjustment_tau
    return (f"logit adjustment τ = {tau:g} with the training class frequencies as prior" if tau > 0
            else "logit adjustment off (τ = 0)")


def _decoupled_phrase(evaluate, tuned):
    """What Kang et al. 2020's arms did (τ-normalisation, cRT), or nothing when they are off."""
    crt = (f"; cRT: the unweighted model's backbone frozen, its head re-initialised and re-trained for "
           f"{_plural(evaluate.crt_epochs, 'epoch')} on class-balanced batches" if evaluate.crt_epochs else "")
    if evaluate.tau_norm is None:
        return crt
    how = f"τ = {evaluate.tau_norm:g}" if tuned is None else (
        "τ tuned on the validation split by balanced accuracy over {"
        + ", ".join(f"{tau:g}" for tau in sorted(set(evaluate.tau_norm_grid))) + "}, chosen: "
        + ", ".join(f"seed {seed} τ = {tau:g}" for seed, tau in tuned.items()))
    return ("; τ-normalised classifier: the unweighted model's class weight vectors divided by their norm to "
            f"the power τ, bias dropped, {how}" + crt)


def _run_paragraph(params, class_counts, alpha, tuned_tau=None, tuned_tau_norm=None):
    minority = ", ".join(class_counts["minority_classes"]) or "none"
    adjustment = _adjustment_phrase(params.evaluate, tuned_tau) + _decoupled_phrase(params.evaluate, tuned_tau_norm)
    imbalance = params.imbalance
    shape = (f"the data's own class counts (largest / smallest training class: "
             f"{measured_ratio(class_counts['train']):.3g})" if imbalance.profile == "none"
             else f"imbalance profile {imbalance.profile} with ratio {imbalance.ratio:g}")
    return [f"Data: {_source(params.data)}, {shape}; minority classes: {minority} ({class_counts['minority_rule']}). Remedy arm: "
            f"{Remedy.of(params).phrase}; {adjustment}. "
            f"Training: {_plural(params.train.epochs, 'epoch')}, seeds "
            f"{', '.join(map(str, params.train.seeds))}. Significance level α = {alpha}.", "",
            f"Training {examples_word(params)} per class: " + ", ".join(f"{c}: {n}" for c, n in class_counts["train"].items()) + "."
            ] + _imbalanced_test_note(class_counts["test"], examples_word(params))


# A test set counts as imbalanced from this ratio of its largest to its smallest class on: 35 and 37
# images a class are balanced for every purpose here, 20 and 40 are not.
IMBALANCED_TEST_RATIO = 1.5


def _imbalanced_test_note(test_counts, examples="images"):
    """With an imbalanced test set accuracy mostly counts the large classes: say what leads instead."""
    ratio = measured_ratio(test_counts)
    if ratio < IMBALANCED_TEST_RATIO:
        return []
    return ["", f"**The test set is imbalanced** ({min(test_counts.values())} to {max(test_counts.values())} {examples} "
            f"a class, ratio {ratio:.3g} ≥ {IMBALANCED_TEST_RATIO:g}, the data's own counts): accuracy there mostly measures the large classes, so the headline is "
            "per-class recall (minority recall) and balanced accuracy, not accuracy."]


# A run too small to mean much is named in the summary: an arm whose mean balanced accuracy lies
# within NEAR_CHANCE of chance (1/K), and a class with fewer than FEW_TEST_IMAGES test images
# (its recall moves in steps of 1/n).
NEAR_CHANCE = 0.1
FEW_TEST_IMAGES = 20


def too_small_warnings(summaries, test_counts, labels, examples="images"):
    """Lines naming what makes this run too small to mean much; [] when nothing does."""
    chance = 1 / len(test_counts)
    lines = []
    for arm, summary in summaries.items():
        accuracy = summary["mean"]["balanced_accuracy"]
        if accuracy < chance + NEAR_CHANCE:
            lines.append(f"- **{labels.get(arm, arm)} is near chance**: balanced accuracy {accuracy:.3f}, chance "
                         f"1/{len(test_counts)} = {chance:.3f} (warned within {NEAR_CHANCE:g} of it); train more "
                         "epochs (train.epochs) before reading its comparisons.")
    few = {name: n for name, n in test_counts.items() if n < FEW_TEST_IMAGES}
    if few:
        lines.append(f"- **Few test {examples}**: " + ", ".join(f"{name} {n} (recall in steps of 1/{n})"
                                                          for name, n in few.items())
                     + f"; fewer than {FEW_TEST_IMAGES} a class: their recalls and verdicts rest on a handful of "
                     f"{examples} (more data, or a larger split.test_fraction, helps).")
    return ["", "## Too small to mean much", ""] + lines if lines else []


def _side_by_side(comparisons, headline, labels):
    """Every comparison's headline differences in one table: mean [interval] → verdict."""
    names = list(comparisons)
    rows = [[metric, *(_interval(comparisons[n]["difference"][metric]) for n in names)]
            for metric in next(iter(comparisons.values()))["difference"]]
    worst = [headline[n]["worst_majority_recall"] for n in names]
    rows.append(["worst majority-class recall", *(
        f"class {w['class']}: {_interval(comparisons[n]['per_class_recall_difference'][str(w['class'])])}"
        for n, w in zip(names, worst))])
    return markdown_table(["metric", *(f"{labels[comparisons[n]['arm']]} − {labels[comparisons[n]['baseline']]}"
                                       for n in names)], rows)


def _difference_table(comparison, labels):
    arm, baseline = labels[comparison["arm"]], labels[comparison["baseline"]]
    table = []
    rows = list(comparison["difference"].items()) + \
        [(f"{kind} of class {c}", d) for kind in ("recall", "precision", "F1")
         for c, d in comparison.get(f"per_class_{kind.lower()}_difference", {}).items()]
    for name, d in rows:
        if "ci_low" in d:
            p = _p(d["p_verdict"]) + (f" (Holm {_p(d['p_holm'])})" if "p_holm" in d else "")
            cells = [f"{d['mean']:+.4f}", _fmt(d["sd"]), f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]",
                     _p(d["p_ttest"]), _p(d["p_signflip"]), _p(d["p_wilcoxon"]) if "p_wilcoxon" in d else "–", p]
        else:
            cells = ["–" if d["mean"] is None else f"{d['mean']:+.4f}"] + ["–"] * 6
        table.append([name, *cells, _verdict_cell(d)])
    header = ["metric", "mean", "sd", "interval", "p (t-test)", "p (sign-flip)", "p (Wilcoxon)", "p (verdict)",
              "verdict"]
    return [f"### {arm} − {baseline}", "", *markdown_table(header, table), ""]


def _mcnemar_table(comparisons, labels):
    names = list(comparisons)
    rows = []
    for seed in next(iter(comparisons.values()))["seeds"]:
        cells = []
        for n in names:
            c, m = comparisons[n], comparisons[n]["mcnemar"][seed]
            only_arm, only_baseline = m[f"only_{c['arm']}_right"], m[f"only_{c['baseline']}_right"]
            cells.append(f"{only_arm} vs {only_baseline}, p {_p(m['p_value'])}")
        rows.append([seed, *cells])
    return markdown_table(["seed", *(f"{labels[comparisons[n]['arm']]} vs {labels[comparisons[n]['baseline']]}"
                                     for n in names)], rows)


def _class_interval_note(comparisons):
    """How the per-class rows' intervals are made: simultaneous, at the level Holm's first step implies."""
    levels = [d["ci_level"] for c in comparisons.values() for d in c["per_class_recall_difference"].values()
              if "ci_level" in d]
    if not levels:
        return ""
    return (f" Per-class rows (and the worst majority class) show {levels[0]} intervals, so that an interval "
            "excluding 0 and the Holm-adjusted verdict say the same thing.")


COSTS_NOTE = (
    "What a remedy costs: minority_precision is the minority classes' mean precision (false alarms); macro_pr_auc "
    "the mean over classes of the average precision one-vs-rest (ranking, no threshold); ece the expected "
    f"calibration error over {CALIBRATION_BINS} equal-width bins of the top-class confidence; loss the test NLL; "
    "brier the multi-class Brier score, mean over {examples} of the sum over classes of (p − [y = k])², 0 to 2. "
    "Lower is better for ece, loss and brier (docs/statistics.md; "
    "[reliability diagrams](reliability_diagrams.png)).")


def _per_class_table(summaries, labels, minority):
    """Each class's precision, recall and F1 per arm, mean over seeds (a * after a minority class)."""
    arms = list(summaries)
    names = list(summaries[arms[0]]["mean"]["per_class"])
    rows = [[f"{name}{'*' * (name in minority)}",
             *(" / ".join(f"{summaries[a]['mean']['per_class'][name][k]:.3f}" for k in ("precision", "recall", "f1"))
               for a in arms)] for name in names]
    return ["## Per class: precision, recall, F1, mean over seeds", "",
            *markdown_table(["class", *(f"{labels[a]} P / R / F1" for a in arms)], rows)]


def _training_fit_lines(summaries, labels):
    """How far the trained arms fit their training split: the weights should matter less as it nears 1."""
    fitted = [arm for arm, summary in summaries.items() if TRAIN_FIT_METRICS[0] in summary["mean"]]
    if not fitted:
        return []
    cells = "; ".join(f"{labels[arm]} " + ", ".join(f"{metric.removeprefix('train_').replace('_', ' ')} "
                                                     f"{_fmt(summaries[arm]['mean'][metric])}"
                                                     for metric in TRAIN_FIT_METRICS if metric in summaries[arm]["mean"])
                      for arm in fitted)
    return [f"Fit of the training split (each model's predictions there, dropout off), mean over seeds: {cells}.", ""]


def summary_markdown(params, summaries, comparisons, headline, class_counts, machine=None):
    """reports/summary.md: what was run, mean ± sd per arm, every paired difference, McNemar per
    seed, and at its foot the machine it was made on (a classweights.machine record)."""
    labels = arm_labels(params)
    arms = list(summaries)
    alpha = next(iter(comparisons.values()))["alpha"]
    lines = [f"# {describe_run(params, class_counts['train'])}", ""]
    lines += [f"- {line}" for line in headline_lines(comparisons, labels)] + [""]
    lines += _run_paragraph(params, class_counts, alpha, summaries.get(LOGIT_ADJUSTED, {}).get("tuned_tau"),
                            summaries.get(TAU_NORMALISED, {}).get("tuned_tau"))
    lines += too_small_warnings(summaries, class_counts["test"], labels, examples_word(params))
    lines += ["", "## Test metrics, mean ± sd over seeds", ""]
    lines += markdown_table(["metric", *(labels[a] for a in arms)],
                            [[metric, *(f"{_fmt(summaries[a]['mean'][metric])} ± {_fmt(summaries[a]['std'][metric])}"
                                        for a in arms)]
                             for metric in TEST_METRICS if metric in summaries[arms[0]]["mean"]])
    lines += ["", COSTS_NOTE.format(examples=examples_word(params)), ""]
    lines += _training_fit_lines(summaries, labels)
    lines += _per_class_table(summaries, labels, class_counts["minority_classes"])
    lines += ["", "## Paired differences side by side", "",
              f"Mean difference over seeds [Student-t {confidence_label(alpha)} interval] → verdict; the worst majority class "
              "is the one whose recall changed least favourably (picked after looking, so even its simultaneous "
              "interval flatters it). A borderline verdict says what would settle it (docs/statistics.md). "
              f"For {', '.join(LOWER_IS_BETTER)} lower is better: there \"better\" is a fall.", ""]
    lines += _side_by_side(comparisons, headline, labels)
    lines += ["", "## Each comparison in full", "",
              f"Student-t {confidence_label(alpha)} interval over seeds, paired t-test p, exact sign-flip p, "
              "Wilcoxon p with 6 or more seeds. The verdict's p is the larger of the t-test and sign-flip p "
              "(Holm-adjusted across the per-class recalls)." + _class_interval_note(comparisons), ""]
    for comparison in comparisons.values():
        lines += _difference_table(comparison, labels)
    lines += ["## McNemar's exact test per seed", "",
              f"Test {examples_word(params)} only the first arm gets right vs only the second, and the exact p.", ""]
    lines += _mcnemar_table(comparisons, labels)
    lines += ["", "Figures: [per-class recall](per_class_recall.png), [confusion matrices](confusion_matrices.png), "
              "[training curves](training_curves.png), [reliability diagrams](reliability_diagrams.png).", "",
              "Training time: each trained arm's fit seconds per training are in metrics/training_seconds.json, "
              "not here: wall-clock time differs from run to run, and this report does not.", ""]
    if machine is not None:
        lines += [machine_line(machine), ""]
    return "\n".join(lines)


def write_report(folder, params, summaries, comparisons, headline, class_counts, confusions, curves_by_arm,
                 machine=None, reliability=None):
    """Write every report file into `folder` atomically (all or nothing). class_counts: data/class_counts.json
    with its counts in class order (evaluation.in_class_order); its minority classes are names.
    machine: where the run was made; reliability: each arm's calibration bins (plot_reliability)."""
    minority = class_counts["minority_classes"]
    labels = arm_labels(params)
    description = describe_run(params, class_counts["train"])
    title = _title(description, comparisons, labels)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        plot_recall(tmp / "per_class_recall.png", summaries, class_counts["train"], minority, labels, title,
                    comparisons, examples_word(params))
        plot_confusions(tmp / "confusion_matrices.png", confusions, labels, title, class_counts["class_names"])
        plot_curves(tmp / "training_curves.png", curves_by_arm, labels, description)
        if reliability is not None:
            plot_reliability(tmp / "reliability_diagrams.png", reliability, summaries, labels, title,
                             examples_word(params))
        (tmp / "summary.md").write_text(summary_markdown(params, summaries, comparisons, headline, class_counts,
                                                         machine))
        write_csv(tmp / "per_class_recall.csv", ["class", "training_images", *summaries],
                  [[c, n] + [f"{summaries[a]['mean']['per_class'][c]['recall']:.6f}" for a in summaries]
                   for c, n in class_counts["train"].items()])
