"""evaluate: test metrics per arm and seed, the paired comparisons, and the report.

The arms: unweighted and weighted (trained), and logit-adjusted (the unweighted models'
probabilities adjusted by the training prior; off when evaluate.logit_adjustment_tau is 0; when
it is `tuned`, each seed's τ is chosen on the validation split from the unweighted model's
predictions there, which only then loads TensorFlow), and tau-normalised (the unweighted models'
classifier with each class's weight vector divided by its norm to the power evaluate.tau_norm,
Kang et al. 2020; off when it is null) and crt (their head re-initialised and re-trained for
evaluate.crt_epochs on class-balanced batches, the backbone frozen: Kang et al.'s cRT; off at 0
epochs). Both load the unweighted models to read their features: a head is trained in seconds.
metrics/<arm>.json and metrics/comparison.json hold the headline numbers (`dvc metrics show`);
metrics/details/ holds every seed, every class and every test, and machine.json: where the
run was made (its one-line form ends reports/summary.md). metrics/training_seconds.json: each
trained arm's fit seconds per training (mean, sd, per seed), from the train stages' own timing."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.evaluate` from the project root, or `dvc repro`")

import time

from classweights.cli import run_stage
from classweights.evaluation import (ARMS, CRT, LOGIT_ADJUSTED, TAU_NORMALISED, UNWEIGHTED, arm_probabilities,
                                     comparison_name, comparison_pairs, confusion, headline_metrics, in_class_order,
                                     linear_proba, pooled_calibration_bins, seed_metrics, summarise_seeds,
                                     tau_normalised_arm, training_fit, tuned_taus)
from classweights.files import atomic_path, read_arrays, read_json, write_json
from classweights.machine import describe
from classweights.params import TUNED, load_params
from classweights.paths import (CLASS_COUNTS, HISTORY, MACHINE, METRICS, REPORTS, SPLITS, TRAIN_PREDICTIONS,
                                TRAINING_SECONDS, model_dir, seconds_file)
from classweights.report import arm_labels, mean_curves, read_curves, verdict_lines, write_report
from classweights.statistics import compare_arms, headline_comparison


def main():
    params = load_params()
    seeds = [str(s) for s in params.train.seeds]
    alpha = params.evaluate.alpha
    labels = read_arrays(SPLITS, ["y_train", "y_test"])
    y_train, y_test = labels["y_train"], labels["y_test"]
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
    decoupled, tau_norm_chosen, crt_seconds = decoupled_arms(params, seeds)
    proba.update(decoupled)
    predictions = {arm: {s: p.argmax(axis=1) for s, p in by_seed.items()} for arm, by_seed in proba.items()}
    per_seed = {arm: {s: seed_metrics(y_test, p, minority_ids, names) for s, p in by_seed.items()} for arm, by_seed in proba.items()}
    for arm in ARMS:  # the trained arms: how far each model fits its training split
        for s in seeds:
            fitted = read_arrays(model_dir(arm, s) / TRAIN_PREDICTIONS, ["pred"])["pred"]
            per_seed[arm][s].update(training_fit(y_train, fitted, minority_ids))
    summaries = {arm: summarise_seeds(per_seed[arm]) for arm in proba}
    if isinstance(tau, dict):
        summaries[LOGIT_ADJUSTED]["tuned_tau"] = tau
    if tau_norm_chosen is not None:
        summaries[TAU_NORMALISED]["tuned_tau"] = tau_norm_chosen
    comparisons = {comparison_name(arm, baseline): compare_arms(per_seed, predictions, y_test, alpha, arm, baseline)
                   for arm, baseline in comparison_pairs(proba)}
    headline = headline_comparison(comparisons, minority)
    confusions = {arm: sum(confusion(y_test, p, len(names)) for p in predictions[arm].values()) for arm in proba}
    curves = {arm: mean_curves([read_curves(model_dir(arm, s) / HISTORY) for s in seeds]) for arm in ARMS}
    reliability = {arm: pooled_calibration_bins(y_test, by_seed) for arm, by_seed in proba.items()}
    machine = describe(params.train.threads)
    # wall-clock, so in a file of its own: every other output here the same inputs reproduce byte for byte
    seconds = {arm: summarise_seeds({s: read_json(seconds_file(arm, s))["fit_seconds"] for s in seeds}) for arm in ARMS}
    if crt_seconds:
        seconds[CRT] = summarise_seeds(crt_seconds)  # the head's re-training alone (the unweighted training is shared)

    write_report(REPORTS, params, summaries, comparisons, headline, class_counts, confusions, curves, machine,
                 reliability)
    with atomic_path(METRICS / "details") as details:  # one folder, so no arm that is off lingers
        details.mkdir()
        for arm, summary in summaries.items():  # the decoupled arms: here only (an arm that is off: no file)
            write_json(details / f"{arm}.json", summary)
        write_json(details / "comparison.json", comparisons)
        write_json(details / MACHINE.name, machine)
    for arm in (*ARMS, LOGIT_ADJUSTED):
        # dvc.yaml declares every arm's file; an arm that is off writes an empty one
        write_json(METRICS / f"{arm}.json", headline_metrics(summaries[arm]) if arm in summaries else {})
    write_json(METRICS / "comparison.json", headline)
    write_json(TRAINING_SECONDS, seconds)
    per_training = ", ".join(f"{arm} {summary['mean']:.1f}" for arm, summary in seconds.items())
    print(f"evaluate: {'; '.join(verdict_lines(comparisons, arm_labels(params)))} "
          f"(paired over {len(seeds)} seeds; reports/summary.md); seconds per training: {per_training} "
          f"({TRAINING_SECONDS})")
    if isinstance(tau, dict):
        print(f"evaluate: τ tuned on validation, per seed: {', '.join(f'{s} {t:g}' for s, t in tau.items())} "
              f"({METRICS / LOGIT_ADJUSTED}.json)")
    if tau_norm_chosen is not None:
        print(f"evaluate: τ-normalisation tuned on validation, per seed: "
              f"{', '.join(f'{s} {t:g}' for s, t in tau_norm_chosen.items())} "
              f"({METRICS / 'details' / TAU_NORMALISED}.json)")


def validation_proba(seeds, x_val, threads):
    """{seed: the unweighted model's probabilities on the validation split}: what a tuned τ is chosen on."""
    from classweights.model import load_model, predict_proba, use_threads  # TensorFlow: only for a tuned τ

    use_threads(threads)
    return {s: predict_proba(load_model(model_dir(UNWEIGHTED, s) / "model.keras"), x_val) for s in seeds}


def decoupled_arms(params, seeds):
    """Kang et al. 2020's arms from the unweighted models, those switched on: ({arm: {seed: test
    probabilities}}, the tuned τ-normalisation per seed or None, {seed: cRT's fit seconds})."""
    tau_norm, crt_epochs = params.evaluate.tau_norm, params.evaluate.crt_epochs
    if tau_norm is None and not crt_epochs:
        return {}, None, {}
    split = read_arrays(SPLITS, ["x_train", "y_train", "x_val", "y_val", "x_test"])
    wanted = ("test", "val", "train") if crt_epochs else ("test", "val")
    heads = unweighted_heads(seeds, {name: split[f"x_{name}"] for name in wanted}, params.train.threads)
    arms, chosen, seconds = {}, None, {}
    if tau_norm is not None:
        arms[TAU_NORMALISED], chosen = tau_normalised_arm(heads, tau_norm, split["y_val"], params.evaluate.tau_norm_grid)
    if crt_epochs:
        from classweights.model import train_head  # TensorFlow: only for cRT

        arms[CRT] = {}
        for s, head in heads.items():
            start = time.perf_counter()
            kernel, bias, _ = train_head(head["train"], split["y_train"], head["val"], split["y_val"],
                                         head["kernel"].shape[1], head["dropout"], params.train, int(s), crt_epochs)
            seconds[s] = round(time.perf_counter() - start, 2)
            arms[CRT][s] = linear_proba(head["test"], kernel, bias)
    return arms, chosen, seconds


def unweighted_heads(seeds, x_by_split, threads):
    """{seed: {"kernel": the unweighted model's head kernel, split: its backbone's features for
    x_by_split[split], "dropout": its head's dropout rate}}: what the decoupled arms start from."""
    from classweights.model import head_inputs, load_model, use_threads  # TensorFlow: only for the decoupled arms

    use_threads(threads)
    heads = {}
    for s in seeds:
        model = load_model(model_dir(UNWEIGHTED, s) / "model.keras")
        heads[s] = {split: head_inputs(model, x)[0] for split, x in x_by_split.items()}
        heads[s]["kernel"], heads[s]["dropout"] = model.layers[-1].get_weights()[0], model.layers[-2].rate
    return heads


if __name__ == "__main__":
    run_stage(main)
