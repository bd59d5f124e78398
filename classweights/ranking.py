"""The remedies of one setting side by side: every remedy's per-seed metrics (the shared unweighted
arm once, each experiment's remedy arm, each post-hoc logit adjustment), ranked by their mean over
the seeds they share, and the best against the runner-up with its p Holm-adjusted over the family
best − each other remedy (classweights.statistics.compare_metrics). Plain data in, rows out."""
import math
import statistics

from classweights.evaluation import CRT, LOGIT_ADJUSTED, TAU_NORMALISED, decoupled_labels, describe_tau
from classweights.params import parse_params
from classweights.remedy import Remedy
from classweights.statistics import compare_metrics

RANKED = ("balanced_accuracy", "minority_recall")  # the remedies are ranked on each of these
SHOWN = (*RANKED, "minority_precision")  # the per-seed metrics the ranking table shows (the last: a cost)
SIGNIFICANT_GAIN = "better"  # evaluate's verdict for a difference whose interval lies above 0


def per_seed_values(details, metrics=SHOWN):
    """{seed: {metric: value}} from an arm's metrics/details/<arm>.json."""
    return {seed: {m: values[m] for m in metrics if m in values} for seed, values in details["seeds"].items()}


def remedy_name(params):
    """A remedy's name in the comparison: the report's label, with the strategy named for
    today's weighted arm (several strategies are several remedies)."""
    remedy = Remedy.of(params)
    if remedy.plain_fit:
        return f"cross-entropy + {remedy.strategy} weights ({remedy.apply})"
    return remedy.label


def remedies_of(records):
    """{name: (per seed {seed: {metric: value}}, seconds per training or None)} for every remedy of
    one setting's experiments: the shared unweighted arm once, each experiment's remedy arm, each
    post-hoc logit adjustment and τ-normalised classifier (per tau; their seconds are the unweighted
    trainings' they reuse) and cRT (its seconds: the head's re-training)."""
    found = {}
    for record in records:
        per_seed, params = record.get("per_seed", {}), parse_params(record["params"], where=record["name"])
        seconds = {arm: value.get("mean") for arm, value in
                   record.get("metrics", {}).get("training_seconds", {}).items()}
        arms = {"unweighted": "unweighted (cross-entropy)", "weighted": remedy_name(params),
                LOGIT_ADJUSTED: f"post-hoc logit adjustment ({describe_tau(params.evaluate.logit_adjustment_tau)})"}
        arms.update(decoupled_labels(params.evaluate))
        trained_by = {"unweighted": "unweighted", "weighted": "weighted", LOGIT_ADJUSTED: "unweighted",
                      TAU_NORMALISED: "unweighted", CRT: CRT}  # cRT's seconds: its head's re-training
        for arm, name in arms.items():
            if arm in per_seed:
                if arm == "weighted" and name in found:  # the same remedy twice (another evaluate.alpha)
                    name = f"{name} [{record['name']}]"
                found.setdefault(name, (per_seed[arm], seconds.get(trained_by[arm])))
    return found


def candidates(records):
    """{name: {seed: {metric: value}}} for every remedy of one setting's experiments (remedies_of)."""
    return {name: per_seed for name, (per_seed, _) in remedies_of(records).items()}


def shared_seeds(remedies):
    """The seeds every remedy of a setting has, in order: the ones their comparison pairs on."""
    return sorted(set.intersection(*(set(v) for v in remedies.values())), key=int) if remedies else []


def best_remedy(setting, records, alpha):
    """For each RANKED metric: the remedy with the highest mean over the seeds every remedy of
    the setting shares, the runner-up, and the paired difference best − runner-up, its p-value
    Holm-adjusted over the family best − each other remedy; one row per metric."""
    remedies = candidates(records)
    seeds = shared_seeds(remedies)
    rows = []
    for metric in RANKED:
        values = {name: [by_seed[s][metric] for s in seeds] for name, by_seed in remedies.items()
                  if all(metric in by_seed[s] for s in seeds)}
        if len(values) < 2 or not seeds:
            continue
        ranked = sorted(values, key=lambda name: -sum(values[name]) / len(seeds))
        best, others = ranked[0], ranked[1:]
        tests = compare_metrics({name: values[best] for name in others}, {name: values[name] for name in others},
                                alpha, family=others)
        runner_up = tests[others[0]]
        rows.append({**setting, "metric": metric, "best": best, "best_mean": sum(values[best]) / len(seeds),
                     "runner_up": others[0], "runner_up_mean": sum(values[others[0]]) / len(seeds),
                     "difference": runner_up["mean"], "ci_low": runner_up.get("ci_low"),
                     "ci_high": runner_up.get("ci_high"), "p_holm": runner_up.get("p_holm"),
                     "beats_runner_up": runner_up["verdict"] == SIGNIFICANT_GAIN, "remedies": len(values),
                     "seeds": len(seeds), "alpha": alpha})
    return rows


def ranking(setting, records):
    """Every remedy of one setting (the shared unweighted arm and the post-hoc adjustment too)
    with its mean and sd over the seeds all of them share, best balanced accuracy first."""
    remedies = remedies_of(records)
    seeds = shared_seeds({name: by_seed for name, (by_seed, _) in remedies.items()})
    rows = []
    for name, (by_seed, seconds) in remedies.items():
        row = {**setting, "remedy": name, "seeds": len(seeds)}
        for metric in SHOWN:
            values = [by_seed[s][metric] for s in seeds if metric in by_seed[s]]
            row[f"{metric}.mean"] = statistics.fmean(values) if values else None
            row[f"{metric}.sd"] = statistics.stdev(values) if len(values) > 1 else None
        row["seconds"] = seconds
        rows.append(row)
    rows.sort(key=lambda r: -(r[f"{RANKED[0]}.mean"] if r[f"{RANKED[0]}.mean"] is not None else -math.inf))
    return [{**row, "rank": rank} for rank, row in enumerate(rows, start=1)]
