"""Paired comparison of the two arms over seeds: is weighted − unweighted real or noise?"""
import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from classweights.evaluation import COMPARED_METRICS

MIN_SEEDS_FOR_WILCOXON = 6  # below that its smallest possible p-value exceeds 0.05 anyway
NO_TEST = "no paired test possible with one seed"


def paired_difference(weighted, unweighted, alpha):
    """Mean, sd, (1 − alpha) Student-t interval and paired t-test p of weighted − unweighted.

    With 6 or more seeds also the Wilcoxon signed-rank p. With one seed only the difference.
    """
    diff = np.asarray(weighted, dtype=float) - np.asarray(unweighted, dtype=float)
    n = len(diff)
    result = {"n_seeds": n, "mean": float(diff.mean()), "differences": [float(d) for d in diff]}
    if n < 2:
        return result
    sd = float(diff.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n))
    if sd == 0:
        # Every seed moved by exactly the same amount: no spread, so either no change at all
        # (p = 1) or a shift the t statistic treats as certain (p = 0).
        p = 1.0 if diff[0] == 0 else 0.0
    else:
        p = float(stats.ttest_rel(weighted, unweighted).pvalue)
    result.update({"sd": sd, "ci_low": result["mean"] - half, "ci_high": result["mean"] + half, "p_ttest": p})
    if n >= MIN_SEEDS_FOR_WILCOXON:
        result["p_wilcoxon"] = 1.0 if not diff.any() else float(stats.wilcoxon(weighted, unweighted).pvalue)
    return result


def verdict(difference, alpha, p_key="p_ttest"):
    """'better', 'worse' or 'no significant difference' for weighted vs unweighted."""
    if difference["n_seeds"] < 2:
        return NO_TEST
    excludes_zero = difference["ci_low"] > 0 or difference["ci_high"] < 0
    if difference[p_key] < alpha and excludes_zero:
        return "better" if difference["mean"] > 0 else "worse"
    return "no significant difference"


def compare_metrics(weighted_by_metric, unweighted_by_metric, alpha, family=()):
    """paired_difference and verdict for each metric; p-values of the metrics in `family`
    (the per-class recalls) are also Holm-adjusted, and their verdict uses the adjusted p."""
    results = {name: paired_difference(weighted_by_metric[name], unweighted_by_metric[name], alpha)
               for name in weighted_by_metric}
    tested = [name for name in family if "p_ttest" in results[name]]
    if tested:
        adjusted = multipletests([results[name]["p_ttest"] for name in tested], method="holm")[1]
        for name, p in zip(tested, adjusted):
            results[name]["p_holm"] = float(p)
    for name, result in results.items():
        result["verdict"] = verdict(result, alpha, "p_holm" if "p_holm" in result else "p_ttest")
    return results


def mcnemar_exact(y_true, pred_weighted, pred_unweighted):
    """McNemar's exact test on one seed's pair of classifiers over the same test images."""
    right_w = pred_weighted == y_true
    right_u = pred_unweighted == y_true
    only_weighted = int(np.sum(right_w & ~right_u))
    only_unweighted = int(np.sum(right_u & ~right_w))
    table = [[int(np.sum(right_w & right_u)), only_unweighted], [only_weighted, int(np.sum(~right_w & ~right_u))]]
    p = 1.0 if only_weighted + only_unweighted == 0 else float(mcnemar(table, exact=True).pvalue)
    return {"only_weighted_right": only_weighted, "only_unweighted_right": only_unweighted, "p_value": p}


def _per_seed_values(per_seed_arm, seeds, name):
    """One arm's value of a headline metric, or of a class's recall ('recall.3'), per seed."""
    if name.startswith("recall."):
        return [per_seed_arm[s]["per_class"][name.removeprefix("recall.")]["recall"] for s in seeds]
    return [per_seed_arm[s][name] for s in seeds]


def compare_arms(per_seed, predictions, y_true, alpha, arm="weighted", baseline="unweighted"):
    """One paired comparison, arm − baseline, seed by seed: differences with verdicts, and McNemar per seed.

    per_seed[arm][seed] are seed_metrics() results; predictions[arm][seed] predicted labels.
    Seeds pair by name, so both arms must hold the same seeds.
    """
    seeds = list(per_seed[arm])
    if set(seeds) != set(per_seed[baseline]):
        raise ValueError(f"{arm} and {baseline} have different seeds: {seeds} vs {list(per_seed[baseline])}")
    first = per_seed[arm][seeds[0]]
    headline = [m for m in COMPARED_METRICS if m in first]
    recalls = [f"recall.{c}" for c in first["per_class"]]
    differences = compare_metrics(
        {m: _per_seed_values(per_seed[arm], seeds, m) for m in headline + recalls},
        {m: _per_seed_values(per_seed[baseline], seeds, m) for m in headline + recalls},
        alpha, family=recalls)
    mcnemar = {}
    for s in seeds:
        test = mcnemar_exact(y_true, predictions[arm][s], predictions[baseline][s])
        mcnemar[s] = {f"only_{arm}_right": test["only_weighted_right"],
                      f"only_{baseline}_right": test["only_unweighted_right"], "p_value": test["p_value"]}
    return {
        "arm": arm,
        "baseline": baseline,
        "alpha": alpha,
        "seeds": seeds,
        "difference": {m: differences[m] for m in headline},
        "per_class_recall_difference": {m.removeprefix("recall."): differences[m] for m in recalls},
        "mcnemar": mcnemar,
    }


def _headline_block(difference):
    """mean, interval, the p the verdict used (Holm-adjusted for a class's recall) and the verdict;
    null where one seed allows no interval or test."""
    p = difference.get("p_holm", difference.get("p_ttest"))
    return {"mean": difference["mean"], "ci_low": difference.get("ci_low"), "ci_high": difference.get("ci_high"),
            "p": p, "verdict": difference["verdict"]}


def headline_comparison(comparisons, minority):
    """metrics/comparison.json: for each comparison (named '<arm>_vs_<baseline>') the headline
    metrics' paired difference, and that of the majority class whose recall dropped most
    (the smallest mean difference; every class counts as majority when none is minority)."""
    result = {"alpha": next(iter(comparisons.values()))["alpha"]}
    for name, comparison in comparisons.items():
        block = {metric: _headline_block(d) for metric, d in comparison["difference"].items()}
        majority = {int(c): d for c, d in comparison["per_class_recall_difference"].items() if int(c) not in minority}
        worst = min(majority, key=lambda c: (majority[c]["mean"], c))
        block["worst_majority_recall"] = {"class": worst, **_headline_block(majority[worst])}
        result[name] = block
    return result
