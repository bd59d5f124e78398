"""Paired comparison of the two arms over seeds: is weighted − unweighted real or noise?

The verdict needs two tests to agree: the paired t-test, and an exact sign-flip permutation
test over seeds, which makes no normality assumption and is defined when every seed moves
by the same amount (where the t statistic is not). README "Reading the verdicts" says why.
"""
import math
from decimal import Decimal

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from classweights.evaluation import COMPARED_METRICS

# Differences are rounded to 1e-9 before any test. The metrics are ratios of image counts, so
# two genuinely different differences are at least 1/(test images) apart (1e-4 for 10,000
# images), while subtracting two such ratios leaves float noise of about 1e-16: rounding
# to 9 decimals merges the noise (0.01 vs 0.009999999999999998) and never merges real steps.
DECIMALS = 9
MIN_SEEDS_FOR_WILCOXON = 6  # below that its smallest possible p-value exceeds 0.05 anyway
# Up to 16 seeds the sign-flip test enumerates all 2^n sign vectors (65,536 x 16 at most);
# above that it draws this many at random with a fixed seed, which is reproducible and, with
# n > 16 seeds, resolves p far below any alpha a person would use.
MAX_EXACT_SIGN_FLIP_SEEDS = 16
SIGN_FLIP_DRAWS = 2 ** 16
NO_TEST = "no paired test possible with one seed"
NOT_COMPUTABLE = "not computable: a difference is NaN or infinite"


def confidence_label(alpha):
    """1 − alpha as a percentage, exactly as typed: '95%', '97.5%' for 0.025, '99.5%' for 0.005."""
    level = (1 - Decimal(repr(float(alpha)))) * 100
    return f"{level.normalize():f}%"


def sign_flip_p(differences):
    """Two-sided p of the exact sign-flip permutation test of mean difference = 0.

    Under "weighting changes nothing" each seed's difference is as likely to have either sign,
    so p is the share of the 2^n sign patterns whose |sum| reaches the observed |sum|. It is
    never below 2 / 2^n (the observed pattern and its mirror image) and is 1 when all are 0.
    """
    # whole numbers of rounding steps: their float sums are exact, so equal sums compare equal
    steps = np.rint(np.asarray(differences) * 10 ** DECIMALS)
    n = len(steps)
    if n <= MAX_EXACT_SIGN_FLIP_SEEDS:
        # row k holds the signs given by the bits of k: all 2^n patterns
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        extra = 0
    else:  # the observed pattern counts as one draw, so p is never 0 (Phipson & Smyth 2010)
        signs = np.random.default_rng(0).choice((1, -1), size=(SIGN_FLIP_DRAWS, n))
        extra = 1
    reached = np.abs(signs @ steps) >= abs(steps.sum())
    return float((reached.sum() + extra) / (len(signs) + extra))


def fewest_seeds_for_a_verdict(alpha):
    """The fewest seeds whose smallest possible sign-flip p, 2 / 2^n, lies below alpha: with
    fewer, no paired comparison can be called better or worse."""
    n = 1
    while 2 / 2 ** n >= alpha:
        n += 1
    return n


def paired_difference(weighted, unweighted, alpha):
    """Mean, sd, (1 − alpha) Student-t interval, paired t-test p and sign-flip p of weighted −
    unweighted, the differences rounded to DECIMALS first.

    With 6 or more seeds also the Wilcoxon signed-rank p. With one seed only the difference.
    With zero spread (every seed moved by the same amount) the t statistic is undefined, so
    p_ttest is None and the sign-flip p alone decides. With a NaN or infinite difference only
    the differences are returned, non-finite ones as None (JSON null).
    """
    diff = np.round(np.subtract(weighted, unweighted), DECIMALS)
    n = len(diff)
    if not np.isfinite(diff).all():
        return {"n_seeds": n, "mean": None, "differences": [float(d) if np.isfinite(d) else None for d in diff]}
    result = {"n_seeds": n, "mean": float(diff.mean()), "differences": [float(d) for d in diff]}
    if n < 2:
        return result
    zero_spread = np.ptp(diff) == 0
    sd = 0.0 if zero_spread else float(diff.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n))
    p_ttest = None if zero_spread else float(stats.ttest_1samp(diff, 0.0).pvalue)
    result.update({"sd": sd, "ci_low": result["mean"] - half, "ci_high": result["mean"] + half,
                   "p_ttest": p_ttest, "p_signflip": sign_flip_p(diff)})
    result["p_verdict"] = max(p for p in (p_ttest, result["p_signflip"]) if p is not None)
    if n >= MIN_SEEDS_FOR_WILCOXON:
        # scipy also gives 1 when every difference is 0, but with a divide-by-zero warning
        result["p_wilcoxon"] = 1.0 if not diff.any() else float(stats.wilcoxon(diff).pvalue)
    return result


def verdict(difference, alpha, p_key="p_verdict"):
    """'better', 'worse' or 'no significant difference' for weighted vs unweighted: 'better' or
    'worse' only when the p-value under p_key is below alpha and the interval excludes 0."""
    if difference["mean"] is None:
        return NOT_COMPUTABLE
    if difference["n_seeds"] < 2:
        return NO_TEST
    excludes_zero = difference["ci_low"] > 0 or difference["ci_high"] < 0
    if difference[p_key] < alpha and excludes_zero:
        return "better" if difference["mean"] > 0 else "worse"
    return "no significant difference"


def compare_metrics(weighted_by_metric, unweighted_by_metric, alpha, family=()):
    """paired_difference and verdict for each metric; the verdict p-values of the metrics in
    `family` (the per-class recalls) are also Holm-adjusted, and their verdict uses the
    adjusted p. A metric with no test (one seed, or not computable) is not in the family."""
    results = {name: paired_difference(weighted_by_metric[name], unweighted_by_metric[name], alpha)
               for name in weighted_by_metric}
    tested = [name for name in family if "p_verdict" in results[name]]
    if tested:
        adjusted = multipletests([results[name]["p_verdict"] for name in tested], method="holm")[1]
        for name, p in zip(tested, adjusted):
            results[name]["p_holm"] = float(p)
    for name, result in results.items():
        result["verdict"] = verdict(result, alpha, "p_holm" if "p_holm" in result else "p_verdict")
    return results


def mcnemar_exact(y_true, pred_weighted, pred_unweighted):
    """McNemar's exact test on one seed's pair of classifiers over the same test images.

    It uses only the discordant images (right for one arm only), so the table's diagonal is
    left 0; with no discordant image p = 1 (statsmodels' binomial gives that itself)."""
    right_w = pred_weighted == y_true
    right_u = pred_unweighted == y_true
    only_weighted = int(np.sum(right_w & ~right_u))
    only_unweighted = int(np.sum(right_u & ~right_w))
    p = float(mcnemar([[0, only_unweighted], [only_weighted, 0]], exact=True).pvalue)
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
    p = difference.get("p_holm", difference.get("p_verdict"))
    return {"mean": difference["mean"], "ci_low": difference.get("ci_low"), "ci_high": difference.get("ci_high"),
            "p": p, "verdict": difference["verdict"]}


def headline_comparison(comparisons, minority):
    """metrics/comparison.json: for each comparison (named '<arm>_vs_<baseline>') the headline
    metrics' paired difference, and that of the majority class whose recall dropped most
    (the smallest mean difference; every class counts as majority when none is minority).
    minority and the per-class keys are class names."""
    result = {"alpha": next(iter(comparisons.values()))["alpha"]}
    for name, comparison in comparisons.items():
        block = {metric: _headline_block(d) for metric, d in comparison["difference"].items()}
        majority = {c: d for c, d in comparison["per_class_recall_difference"].items() if c not in minority}
        order = list(majority)  # class index order: the first of equals is the worst
        # a class whose difference is not computable (mean None) cannot be the worst
        worst = min(majority, key=lambda c: (math.inf if majority[c]["mean"] is None else majority[c]["mean"],
                                             order.index(c)))
        block["worst_majority_recall"] = {"class": worst, **_headline_block(majority[worst])}
        result[name] = block
    return result
