"""Paired comparison of two arms over seeds: is arm − baseline real or noise, and how firmly?

The verdict needs two tests to agree: the paired t-test, and an exact sign-flip permutation
test over seeds, which makes no normality assumption and is defined when every seed moves
by the same amount (where the t statistic is not). docs/statistics.md says why, and gives
the rule that marks a verdict as borderline.
"""
import math
from decimal import Decimal

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from classweights.evaluation import COMPARED_METRICS, LOWER_IS_BETTER

# Differences are rounded to 1e-9 before any test. The metrics are ratios of image counts, so
# two genuinely different differences are at least 1/(test images) apart (1e-4 for 10,000
# images), while subtracting two such ratios leaves float noise of about 1e-16: rounding
# to 9 decimals merges the noise (0.01 vs 0.009999999999999998) and never merges real steps.
# The continuous metrics (PR-AUC, ECE, NLL, Brier) lose nothing that matters at 1e-9.
DECIMALS = 9
MIN_SEEDS_FOR_WILCOXON = 6  # below that its smallest possible p-value exceeds 0.05 anyway
# Up to 16 seeds the sign-flip test enumerates all 2^n sign patterns (65,536 at most); above
# that it draws this many at random with a fixed seed, which is reproducible and, with n > 16
# seeds, resolves p far below any alpha a person would use.
SIGN_FLIP_DRAWS = 2 ** 16
# scipy.stats.permutation_test's settings for it: "samples" flips the signs of one sample's
# values; the statistic is |sum|, so the one-sided "greater" counts both tails of the sum.
SIGN_FLIP_TEST = {"permutation_type": "samples", "alternative": "greater"}
# Borderline (docs/statistics.md): the verdict's p within this factor of alpha either way, or
# the interval's end nearest 0 within this share of the interval's width from 0.
BORDERLINE_P_FACTOR = 2
BORDERLINE_WIDTH_SHARE = 0.1
MAX_SEEDS_ESTIMATE = 1000  # seeds_to_settle looks no further
FAMILY_METHOD = "holm"  # statsmodels' name for Holm's step-down adjustment of the per-class p-values
NO_TEST = "no paired test possible with one seed"
NOT_COMPUTABLE = "not computable: a difference is NaN or infinite"


def confidence_label(alpha):
    """1 − alpha as a percentage, exactly as typed: '95%', '97.5%' for 0.025, '99.5%' for 0.005."""
    level = (1 - Decimal(repr(float(alpha)))) * 100
    return f"{level.normalize():f}%"


def _abs_sum(steps, axis):
    return np.abs(steps.sum(axis=axis))


def sign_flip_p(differences):
    """Two-sided p of the sign-flip permutation test of mean difference = 0 (n >= 2 seeds).

    Under "the arms do not differ" each seed's difference is as likely to have either sign,
    so p is the share of the 2^n sign patterns whose |sum| reaches the observed |sum|: exact
    up to 16 seeds, never below 2 / 2^n, 1 when all are 0. Beyond 16 seeds scipy draws
    SIGN_FLIP_DRAWS patterns and counts the observed one too (p never 0).
    """
    # whole numbers of rounding steps: their float sums are exact, so equal sums compare equal
    steps = np.rint(np.asarray(differences) * 10 ** DECIMALS)
    # _abs_sum takes `axis`, so scipy evaluates all patterns in one vectorised call
    test = stats.permutation_test((steps,), _abs_sum, **SIGN_FLIP_TEST, n_resamples=SIGN_FLIP_DRAWS,
                                  rng=np.random.default_rng(0))
    return float(test.pvalue)


def t_interval(mean, sd, n, alpha):
    """The (1 − alpha) Student-t interval of a mean of n paired differences."""
    half = float(stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n))
    return mean - half, mean + half


def paired_difference(arm, baseline, alpha):
    """Mean, sd, (1 − alpha) Student-t interval, paired t-test p and sign-flip p of arm −
    baseline (per-seed scores, paired by position), the differences rounded to DECIMALS first.

    With 6 or more seeds also the Wilcoxon signed-rank p. With one seed only the difference.
    With zero spread (every seed moved by the same amount) the t statistic is undefined, so
    p_ttest is None and the sign-flip p alone decides. With a NaN or infinite difference only
    the differences are returned, non-finite ones as None (JSON null).
    """
    diff = np.round(np.subtract(arm, baseline), DECIMALS)
    n = len(diff)
    if not np.isfinite(diff).all():
        return {"n_seeds": n, "mean": None, "differences": [float(d) if np.isfinite(d) else None for d in diff]}
    result = {"n_seeds": n, "mean": float(diff.mean()), "differences": [float(d) for d in diff]}
    if n < 2:
        return result
    zero_spread = np.ptp(diff) == 0
    sd = 0.0 if zero_spread else float(diff.std(ddof=1))
    ci_low, ci_high = t_interval(result["mean"], sd, n, alpha)
    p_ttest = None if zero_spread else float(stats.ttest_1samp(diff, 0.0).pvalue)
    result.update({"sd": sd, "ci_low": ci_low, "ci_high": ci_high, "ci_level": confidence_label(alpha),
                   "p_ttest": p_ttest, "p_signflip": sign_flip_p(diff)})
    result["p_verdict"] = max(p for p in (p_ttest, result["p_signflip"]) if p is not None)
    if n >= MIN_SEEDS_FOR_WILCOXON:
        # scipy also gives 1 when every difference is 0, but with a divide-by-zero warning
        result["p_wilcoxon"] = 1.0 if not diff.any() else float(stats.wilcoxon(diff).pvalue)
    return result


def excludes_zero(difference):
    return difference["ci_low"] > 0 or difference["ci_high"] < 0


def verdict(difference, alpha, p_key="p_verdict", lower_is_better=False):
    """'better', 'worse' or 'no significant difference' for arm vs baseline: 'better' or
    'worse' only when the p-value under p_key is below alpha and the interval excludes 0.
    'better' is above 0, or below 0 for a metric where lower is better (an error, a loss)."""
    if difference["mean"] is None:
        return NOT_COMPUTABLE
    if difference["n_seeds"] < 2:
        return NO_TEST
    if difference[p_key] < alpha:
        if difference["ci_low"] > 0:
            return "worse" if lower_is_better else "better"
        if difference["ci_high"] < 0:
            return "better" if lower_is_better else "worse"
    return "no significant difference"


def borderline_reasons(difference, p, alpha):
    """Why a tested difference's verdict is not firm (docs/statistics.md); [] when it is.

    p: the p the verdict used. The reasons: the interval excludes 0 while the verdict's p does
    not reach alpha (the t-test and the sign-flip test disagree); p within a factor
    BORDERLINE_P_FACTOR of alpha; the interval's end nearest 0 within BORDERLINE_WIDTH_SHARE
    of its width from 0 (on either side)."""
    reasons = []
    if excludes_zero(difference) and p >= alpha:
        reasons.append("the interval excludes 0 but the sign-flip test does not confirm it")
    if alpha / BORDERLINE_P_FACTOR <= p < alpha * BORDERLINE_P_FACTOR:
        reasons.append(f"p within a factor {BORDERLINE_P_FACTOR} of α")
    near_end = min(abs(difference["ci_low"]), abs(difference["ci_high"]))
    if near_end < BORDERLINE_WIDTH_SHARE * (difference["ci_high"] - difference["ci_low"]):
        reasons.append("the interval ends near 0")
    return reasons


def seeds_to_settle(mean, sd, seeds_run, alpha, family_size=1):
    """Estimated seeds (more than seeds_run) after which, if the mean and sd stayed as observed,
    the verdict would no longer be borderline: the t-test p (Bonferroni over the family) below
    alpha / 2, the interval at level 1 − alpha / family_size ending more than
    BORDERLINE_WIDTH_SHARE of its width from 0, and the sign-flip test able to reach p below
    alpha / 2 (2 · family / 2^n < alpha / 2). None when the mean is 0 (more seeds then only
    confirm "no difference") or beyond MAX_SEEDS_ESTIMATE."""
    if mean == 0:
        return None
    n = np.arange(seeds_run + 1, MAX_SEEDS_ESTIMATE + 1)
    sign_flip_reachable = 2 * family_size * 0.5 ** n < alpha / 2
    if sd == 0:
        settled = sign_flip_reachable
    else:
        # the t statistic must pass both: p · family < alpha / 2, and |mean| − half-width above
        # BORDERLINE_WIDTH_SHARE of the width, i.e. |mean| > (1 + 2 · share) · half-width
        p_needs = stats.t.ppf(1 - alpha / family_size / 4, n - 1)
        margin_needs = (1 + 2 * BORDERLINE_WIDTH_SHARE) * stats.t.ppf(1 - alpha / family_size / 2, n - 1)
        settled = sign_flip_reachable & (abs(mean) * np.sqrt(n) / sd > np.maximum(p_needs, margin_needs))
    return int(n[settled][0]) if settled.any() else None


def _mark_firmness(result, p, alpha, family_size):
    """Add 'borderline' (the reasons, [] when firm) and 'seeds_to_settle' to a tested result."""
    reasons = borderline_reasons(result, p, alpha)
    result["borderline"] = reasons
    result["seeds_to_settle"] = (seeds_to_settle(result["mean"], result["sd"], result["n_seeds"], alpha, family_size)
                                 if reasons else None)


def compare_metrics(arm_by_metric, baseline_by_metric, alpha, family=(), lower_is_better=()):
    """paired_difference, verdict and firmness for each metric (lower_is_better: the metrics whose
    verdict calls a fall 'better').

    The verdict p-values of the metrics in `family` (the per-class recalls) are Holm-adjusted
    and their verdict uses the adjusted p; their intervals are simultaneous Bonferroni intervals
    at level 1 − alpha / m (m: the family's tested metrics), the level Holm's first step tests
    at, so an interval that excludes 0 has a Holm-adjusted t-test p below alpha. A metric with
    no test (one seed, or not computable) is not in the family."""
    results = {name: paired_difference(arm_by_metric[name], baseline_by_metric[name], alpha)
               for name in arm_by_metric}
    tested = [name for name in family if "p_verdict" in results[name]]
    if tested:
        adjusted = multipletests([results[name]["p_verdict"] for name in tested], method=FAMILY_METHOD)[1]
        family_alpha = alpha / len(tested)
        for name, p in zip(tested, adjusted):
            result = results[name]
            result["p_holm"] = float(p)
            result["ci_low"], result["ci_high"] = t_interval(result["mean"], result["sd"], result["n_seeds"],
                                                             family_alpha)
            result["ci_level"] = f"{confidence_label(family_alpha)} simultaneous (Bonferroni over {len(tested)})"
    for name, result in results.items():
        p_key = "p_holm" if "p_holm" in result else "p_verdict"
        result["verdict"] = verdict(result, alpha, p_key, name in lower_is_better)
        if p_key in result:
            _mark_firmness(result, result[p_key], alpha, len(tested) if p_key == "p_holm" else 1)
    return results


def mcnemar_exact(y_true, pred_arm, pred_baseline):
    """McNemar's exact test on one seed's pair of classifiers over the same test images.

    It uses only the discordant images (right for one arm only), so only they enter the table,
    off its diagonal; with no discordant image p = 1 (statsmodels' binomial gives that itself)."""
    right_arm = pred_arm == y_true
    right_baseline = pred_baseline == y_true
    only_arm = int(np.sum(right_arm & ~right_baseline))
    only_baseline = int(np.sum(right_baseline & ~right_arm))
    table = np.fliplr(np.diag([only_baseline, only_arm]))  # [[0, only_baseline], [only_arm, 0]]
    p = float(mcnemar(table).pvalue)  # statsmodels' default: the exact binomial test
    return {"only_arm_right": only_arm, "only_baseline_right": only_baseline, "p_value": p}


PER_CLASS = ("recall", "precision", "f1")  # each a family of per-class tests of its own


def compare_arms(per_seed, predictions, y_true, alpha, arm="weighted", baseline="unweighted"):
    """One paired comparison, arm − baseline, seed by seed: differences with verdicts, and McNemar per seed.

    per_seed[arm][seed] are seed_metrics() results; predictions[arm][seed] predicted labels.
    Seeds pair by name, so both arms must hold the same seeds. The per-class recalls, precisions
    and F1s are three families, each Holm-adjusted over its classes.
    """
    seeds = list(per_seed[arm])
    if set(seeds) != set(per_seed[baseline]):
        raise ValueError(f"{arm} and {baseline} have different seeds: {seeds} vs {list(per_seed[baseline])}")
    first = per_seed[arm][seeds[0]]
    headline = [m for m in COMPARED_METRICS if m in first]
    classes = list(first["per_class"])

    def values(side, name, kind=None):
        return [per_seed[side][s]["per_class"][name][kind] if kind else per_seed[side][s][name] for s in seeds]

    differences = compare_metrics({m: values(arm, m) for m in headline}, {m: values(baseline, m) for m in headline},
                                  alpha, lower_is_better=LOWER_IS_BETTER)
    per_class = {kind: compare_metrics({c: values(arm, c, kind) for c in classes},
                                       {c: values(baseline, c, kind) for c in classes}, alpha, family=classes)
                 for kind in PER_CLASS}
    mcnemar = {}
    for s in seeds:
        test = mcnemar_exact(y_true, predictions[arm][s], predictions[baseline][s])
        mcnemar[s] = {f"only_{arm}_right": test["only_arm_right"],
                      f"only_{baseline}_right": test["only_baseline_right"], "p_value": test["p_value"]}
    return {
        "arm": arm,
        "baseline": baseline,
        "alpha": alpha,
        "seeds": seeds,
        "difference": differences,
        **{f"per_class_{kind}_difference": per_class[kind] for kind in PER_CLASS},
        "mcnemar": mcnemar,
    }


def _headline_block(difference):
    """mean, interval, the p the verdict used (Holm-adjusted for a class's recall), the verdict and
    whether it is borderline; null where one seed allows no interval or test."""
    p = difference.get("p_holm", difference.get("p_verdict"))
    return {"mean": difference["mean"], "ci_low": difference.get("ci_low"), "ci_high": difference.get("ci_high"),
            "p": p, "verdict": difference["verdict"], "borderline": bool(difference.get("borderline")),
            "seeds_to_settle": difference.get("seeds_to_settle")}


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
