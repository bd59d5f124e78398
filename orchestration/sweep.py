"""The sweep file: which params.yaml keys to vary, validated point by point with the real
params validation, expanded into grid points.

sweep.yaml holds `fixed` (key: value, set at every point) and `grid` (key: [values]; every
combination is one point; a list of such mappings adds further grids). Keys are dotted
params.yaml keys, e.g. imbalance.ratio.
"""
import itertools
import json
from pathlib import Path

from classweights import ranking
from classweights.errors import UserError
from classweights.params import parse_params, read_yaml
from classweights.paths import MACHINE, TRAINING_SECONDS
from orchestration import sweep_report
from orchestration.plan import point_label, point_name, set_options, unweighted_group  # noqa: F401 (a point's names)

SWEEP_KEYS = ("fixed", "grid")


def read_sweep(path, params_path="params.yaml"):
    """Read and validate a sweep file; return (fixed, points), each point a {key: value} dict.

    Every point, merged over params_path, must pass params.yaml validation; the first
    problem raises UserError naming the file, key and value."""
    path = Path(path)
    raw = read_yaml(path, "pass SWEEP=path to a sweep file")
    if not isinstance(raw, dict) or "grid" not in raw:
        raise UserError(f"{path}: must be a mapping with 'grid' (key: [values]) and optionally 'fixed' (key: value)")
    unknown = sorted(set(raw) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown section {unknown[0]!r}; allowed: {', '.join(SWEEP_KEYS)}")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise UserError(f"{path}: fixed must map keys to single values, e.g. data.source: mnist-sample")
    grids = raw["grid"] if isinstance(raw["grid"], list) else [raw["grid"]]
    points = [point for grid in grids for point in _expand(path, grid, fixed)]
    if not all(isinstance(key, str) for key in [*fixed, *(k for p in points for k in p)]):
        raise UserError(f"{path}: keys must be params.yaml keys written section.key, e.g. imbalance.ratio")
    base = read_base(params_path)
    seen = {}
    for point in points:
        params = parse_params(apply_overrides(base, {**fixed, **point}), where=str(path))
        identity = params.model_dump_json()  # the same validated params, however the grids spell them
        if identity in seen:
            raise UserError(f"{path}: duplicate grid point {point_label(point)} (the same params as "
                            f"{point_label(seen[identity])}); list each combination once")
        seen[identity] = point
    return fixed, points


def _expand(path, grid, fixed):
    if not isinstance(grid, dict) or not grid:
        raise UserError(f"{path}: grid must map keys to lists of values, e.g. imbalance.ratio: [1, 5, 20]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{path}: grid {key} = {values!r}: give a non-empty list of values")
        if key in fixed:
            raise UserError(f"{path}: {key} is both fixed and in the grid; keep it in one place")
    keys = list(grid)
    return [dict(zip(keys, combination)) for combination in itertools.product(*grid.values())]


def read_base(params_path="params.yaml"):
    return read_yaml(params_path, "run from the project root") or {}


def apply_overrides(params, overrides):
    """A copy of nested params with {dotted.key: value} set (as `dvc exp run -S` does)."""
    merged = json.loads(json.dumps(params))
    for key, value in overrides.items():
        *sections, last = key.split(".")
        node = merged
        for section in sections:
            if not isinstance(node.get(section), dict):
                node[section] = {}
            node = node[section]
        node[last] = value
    return merged


def varied_keys(points):
    return list(dict.fromkeys(key for point in points for key in point))


# evaluate's files, metrics/<stem>.json
STEMS = ("comparison", *sweep_report.ARMS, sweep_report.LOGIT_ADJUSTED, *sweep_report.DECOUPLED)
# Every file of an experiment the map reads: the adapter reads them, and nothing else, in one pass.
EXPERIMENT_FILES = (str(TRAINING_SECONDS), str(MACHINE), *(f"metrics/{stem}.json" for stem in STEMS),
                    *(f"metrics/details/{stem}.json" for stem in STEMS[1:]))


def finished_experiments():
    """Every finished experiment of the current commit with its params and headline metrics."""
    from orchestration.experiments import finished_experiments as finished

    return [{"name": e["name"], "params": e["params"], **experiment_metrics(e["files"])}
            for e in finished(EXPERIMENT_FILES)]


def experiment_metrics(files):
    """{"metrics": {file stem: JSON}, "per_seed": {arm: {seed: {metric: value}}}} of one
    experiment, every arm included (the logit-adjusted one too), from its files ({path: text} of
    EXPERIMENT_FILES, a path it lacks absent); an arm that is off has no file and is absent; and
    "machine": where it was made (metrics/details/machine.json; None before runs recorded it).
    metrics["training_seconds"]: the trained arms' seconds per training, where the run recorded them."""
    metrics, per_seed = {}, {}
    if str(TRAINING_SECONDS) in files:
        metrics["training_seconds"] = json.loads(files[str(TRAINING_SECONDS)])
    for stem in STEMS:
        if f"metrics/{stem}.json" in files:
            metrics[stem] = json.loads(files[f"metrics/{stem}.json"])
        if f"metrics/details/{stem}.json" in files:
            per_seed[stem] = ranking.per_seed_values(json.loads(files[f"metrics/details/{stem}.json"]))
    machine = json.loads(files[str(MACHINE)]) if str(MACHINE) in files else None
    return {"metrics": metrics, "per_seed": per_seed, "machine": machine}


def _settings(records):
    """{setting: its experiments}, a setting being the points' keys the unweighted arm reads."""
    settings = {}
    for record in records:
        settings.setdefault(unweighted_group(record["point"]), []).append(record)
    return settings


def best_remedies(records):
    """classweights.ranking.best_remedy for every setting, over the experiments of that setting, at the
    alpha of the first one."""
    rows = []
    for group, members in _settings(records).items():
        alpha = members[0]["params"]["evaluate"]["alpha"]
        rows += ranking.best_remedy({k: json.loads(v) for k, v in group}, members, alpha)
    return rows


def remedy_rankings(records):
    """classweights.ranking.ranking for every setting."""
    return [row for group, members in _settings(records).items()
            for row in ranking.ranking({k: json.loads(v) for k, v in group}, members)]


def complete_points(base, fixed, points):
    """Every point with every varied key, a key its grid leaves out at the value it runs with
    (grids of one sweep may vary different keys: one a loss's gamma, another the weights)."""
    keys = varied_keys(points)
    return [{key: _lookup(apply_overrides(base, {**fixed, **point}), key) for key in keys} for point in points]


def _lookup(params, key):
    for part in key.split("."):
        params = params[part]
    return params


def match_points(base, fixed, points, experiments):
    """The experiments whose params.yaml is exactly the base with a point's overrides."""
    matched = []
    for point in points:
        expected = apply_overrides(base, {**fixed, **point})
        found = next((e for e in experiments if e["params"] == expected), None)
        if found is not None:
            matched.append({**found, "point": point})
    return matched


def collect(path, pull=False):
    """`python -m orchestration.sweep`: draw the map from the finished experiments."""
    from orchestration.experiments import fetch_all

    fixed, points = read_sweep(path)
    if pull:
        fetch_all()
    base = read_base("params.yaml")
    points = complete_points(base, fixed, points)
    records = match_points(base, fixed, points, finished_experiments())
    rows = sweep_report.sweep_rows(points, records)
    best = best_remedies(records)
    sweep_report.write_report(rows, varied_keys(points), best=best, machines=[r.get("machine") for r in records],
                              ranked=remedy_rankings(records))
    print(f"sweep: {len(rows)} of {len(points)} grid points have a finished experiment; "
          f"wrote {sweep_report.OUT}/sweep.csv, sweep.png, sweep.md{', best.csv' if best else ''}")
    return rows


def main():
    import argparse

    parser = argparse.ArgumentParser(description="Collect a sweep's experiments into sweep/ (csv, png, md).")
    parser.add_argument("sweep", nargs="?", default="sweep.yaml")
    parser.add_argument("--pull", action="store_true",
                        help="first fetch every experiment of this commit from the git remote 'origin' "
                             "(and run records from the default DVC remote)")
    args = parser.parse_args()
    collect(args.sweep, args.pull)


if __name__ == "__main__":
    from classweights.cli import run_stage

    run_stage(main)
