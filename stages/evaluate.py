"""evaluate: test metrics per arm and seed, the paired comparisons, and the report.

The arms: unweighted and weighted (trained), and logit-adjusted (the unweighted models'
probabilities adjusted by the training prior; off when evaluate.logit_adjustment_tau is 0; when
it is `tuned`, each seed's τ is chosen on the validation split from the unweighted model's
predictions there, which only then loads TensorFlow).
metrics/<arm>.json and metrics/comparison.json hold the headline numbers (`dvc metrics show`);
metrics/details/ holds every seed, every class and every test, and machine.json: where the
run was made (its one-line form ends reports/summary.md). metrics/training_seconds.json: each
trained arm's fit seconds per training (mean, sd, per seed), from the train stages' own timing."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.evaluate` from the project root, or `dvc repro`")

from classweights.cli import run_stage
from classweights.evaluation import (ARMS, LOGIT_ADJUSTED, UNWEIGHTED, arm_probabilities, comparison_name,
                                     comparison_pairs, confusion, headline_metrics, in_class_order,
                                     pooled_calibration_bins, seed_metrics, summarise_seeds, tuned_taus)
from classweights.files import atomic_path, read_arrays, read_json, write_json
from classweights.machine import describe
from classweights.params import TUNED, load_params
from classweights.paths import (CLASS_COUNTS, HISTORY, MACHINE, METRICS, REPORTS, SPLITS, TRAINING_SECONDS, model_dir,
                                seconds_file)
from classweights.report import arm_labels, mean_curves, read_curves, verdict_lines, write_report
from classweights.statistics import compare_arms, headline_comparison


def main():
    params = load_params()
    seeds = [str(s) for s in params.train.seeds]
    alpha = params.evaluate.alpha
    y_test = read_arrays(SPLITS, ["y_test"])["y_test"]
    class_counts = in_class_order(read_json(CLASS_COUNTS))
    names = class_counts["class_names"]
    minority = class_counts["minority_classes"]  # names
    minority_ids = [names.index(name) for name in minority]
    trained = {arm: {s: read_arrays(model_dir(arm, s) / "test_proba.npz", ["proba"])["proba"] for s in seeds}
               for arm in ARMS}
    tau = params.evaluate.logit_adjustment_tau
    if tau == TUNED:
        val = read_arrays(SPLITS, ["x_val", "y_val"])
        tau = tuned_taus(val["y_val"], validation_proba(seeds, val["x_val"], params.train.threads),
                         class_counts["train"], params.evaluate.logit_adjustment_tau_grid)
    proba = arm_probabilities(trained, class_counts["train"], tau)
    predictions = {arm: {s: p.argmax(axis=1) for s, p in by_seed.items()} for arm, by_seed in proba.items()}
    per_seed = {arm: {s: seed_metrics(y_test, p, minority_ids, names) for s, p in by_seed.items()} for arm, by_seed in proba.items()}
    summaries = {arm: summarise_seeds(per_seed[arm]) for arm in proba}
    if isinstance(tau, dict):
        summaries[LOGIT_ADJUSTED]["tuned_tau"] = tau
    comparisons = {comparison_name(arm, baseline): compare_arms(per_seed, predictions, y_test, alpha, arm, baseline)
                   for arm, baseline in comparison_pairs(proba)}
    headline = headline_comparison(comparisons, minority)
    confusions = {arm: sum(confusion(y_test, p, len(names)) for p in predictions[arm].values()) for arm in proba}
    curves = {arm: mean_curves([read_curves(model_dir(arm, s) / HISTORY) for s in seeds]) for arm in ARMS}
    reliability = {arm: pooled_calibration_bins(y_test, by_seed) for arm, by_seed in proba.items()}
    machine = describe(params.train.threads)
    # wall-clock, so in a file of its own: every other output here the same inputs reproduce byte for byte
    seconds = {arm: summarise_seeds({s: read_json(seconds_file(arm, s))["fit_seconds"] for s in seeds}) for arm in ARMS}

    write_report(REPORTS, params, summaries, comparisons, headline, class_counts, confusions, curves, machine,
                 reliability)
    with atomic_path(METRICS / "details") as details:  # one folder, so no arm that is off lingers
        details.mkdir()
        for arm, summary in summaries.items():
            write_json(details / f"{arm}.json", summary)
        write_json(details / "comparison.json", comparisons)
        write_json(details / MACHINE.name, machine)
    for arm in (*ARMS, LOGIT_ADJUSTED):
        # dvc.yaml declares every arm's file; an arm that is off writes an empty one
        write_json(METRICS / f"{arm}.json", headline_metrics(summaries[arm]) if arm in summaries else {})
    write_json(METRICS / "comparison.json", headline)
    write_json(TRAINING_SECONDS, seconds)
    per_training = ", ".join(f"{arm} {seconds[arm]['mean']:.1f}" for arm in ARMS)
    print(f"evaluate: {'; '.join(verdict_lines(comparisons, arm_labels(params)))} "
          f"(paired over {len(seeds)} seeds; reports/summary.md); seconds per training: {per_training} "
          f"({TRAINING_SECONDS})")
    if isinstance(tau, dict):
        print(f"evaluate: τ tuned on validation, per seed: {', '.join(f'{s} {t:g}' for s, t in tau.items())} "
              f"({METRICS / LOGIT_ADJUSTED}.json)")


def validation_proba(seeds, x_val, threads):
    """{seed: the unweighted model's probabilities on the validation split}: what a tuned τ is chosen on."""
    from classweights.model import load_model, predict_proba, use_threads  # TensorFlow: only for a tuned τ

    use_threads(threads)
    return {s: predict_proba(load_model(model_dir(UNWEIGHTED, s) / "model.keras"), x_val) for s in seeds}


if __name__ == "__main__":
    run_stage(main)
