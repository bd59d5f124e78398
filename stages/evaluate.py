"""evaluate: test metrics per arm and seed, the paired comparison, and the report.

metrics/*.json hold the headline numbers (`dvc metrics show`); metrics/details/ holds every
seed, every class and every test."""
from classweights.cli import run_stage
from classweights.evaluation import ARMS, confusion, headline_metrics, seed_metrics, summarise_seeds
from classweights.files import read_arrays, read_json, write_json
from classweights.params import load_params
from classweights.report import mean_curves, read_curves, write_report
from classweights.paths import CLASS_COUNTS, METRICS, REPORTS, SPLITS, model_dir
from classweights.statistics import compare_arms, headline_comparison


def main():
    params = load_params()
    seeds = params.train.seeds
    y_test = read_arrays(SPLITS, ["y_test"])["y_test"]
    class_counts = read_json(CLASS_COUNTS)
    minority = class_counts["minority_classes"]
    proba = {arm: {str(s): read_arrays(model_dir(arm, s) / "test_proba.npz", ["proba"])["proba"] for s in seeds}
             for arm in ARMS}
    predictions = {arm: {s: p.argmax(axis=1) for s, p in by_seed.items()} for arm, by_seed in proba.items()}
    per_seed = {arm: {s: seed_metrics(y_test, p, minority) for s, p in by_seed.items()} for arm, by_seed in proba.items()}
    summaries = {arm: summarise_seeds(per_seed[arm]) for arm in ARMS}
    comparison = compare_arms(per_seed, predictions, y_test, params.evaluate.alpha)
    confusions = {arm: sum(confusion(y_test, p) for p in predictions[arm].values()) for arm in ARMS}
    curves = {arm: mean_curves([read_curves(model_dir(arm, s) / "live") for s in seeds]) for arm in ARMS}

    write_report(REPORTS, summaries, comparison, class_counts, confusions, curves, predictions, y_test)
    for arm in ARMS:
        write_json(METRICS / "details" / f"{arm}.json", summaries[arm])
        write_json(METRICS / f"{arm}.json", headline_metrics(summaries[arm]))
    write_json(METRICS / "details" / "comparison.json", comparison)
    write_json(METRICS / "comparison.json", headline_comparison(comparison))
    print(f"evaluate: {len(seeds)} seed(s); see reports/summary.md")


if __name__ == "__main__":
    run_stage(main)
