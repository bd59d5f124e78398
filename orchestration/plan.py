"""What a run does, decided before anything starts: from the params, the sweep file's points, what
`dvc status` reports and which experiments have finished anywhere, which trainings or grid points
to run, grouped (a setting's unweighted arm trained once), in which order, with which warnings.
Pure: no process, no DVC. orchestration.executor runs the tasks; orchestration.scaleout ties the
two together."""
import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass

from classweights.errors import UserError
from classweights.paths import ARMS

TRAINING_STAGES = tuple(f"train_{arm}@" for arm in ARMS)  # dvc.yaml's foreach stages, one per (arm, seed)
# Keys the unweighted arm never reads: points that differ only here are remedies of one setting
# and share its unweighted trainings (one task trains them, DVC's run cache restores them).
NOT_READ_BY_UNWEIGHTED = ("weights.", "loss.", "evaluate.")


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: (arm, seed) "training"s (targets: their stages), a grid
    "point" (an experiment) or a group's "unweighted arm" (options: `-S key=value` arguments);
    `trainings`: how many (arm, seed) trainings it holds; `later`: tasks that start once it has ended."""
    name: str
    kind: str
    trainings: int
    targets: tuple = ()
    options: tuple = ()
    later: tuple = ()


def all_tasks(tasks):
    """The tasks and every task that starts after one of them, in that order."""
    return [task for first in tasks for task in (first, *all_tasks(first.later))]


def after(task, failed=False):
    """The tasks to start once `task` has ended. Its later ones, even if it failed (their own runs
    say why, or succeed where it did not); but when a group's unweighted-arm task failed, its
    points run one after another, so that the first trains the arm and the others restore it,
    instead of each training it at once."""
    if failed and task.kind == "unweighted arm" and len(task.later) > 1:
        return (dataclasses.replace(task.later[0], later=task.later[1:]),)
    return task.later


def parse_jobs(text, cores=None):
    """JOBS: a whole number >= 1 (empty: every core of this machine)."""
    if text.strip() == "":
        return cores or os.cpu_count() or 1
    if not text.strip().isdigit() or int(text) < 1:
        raise UserError(f"JOBS={text}: must be a whole number >= 1 (trainings run side by side)")
    return int(text)


def parse_shard(text):
    """SHARD=k/N: this machine runs share k of N, 1 <= k <= N (empty: the whole sweep)."""
    if text.strip() == "":
        return 1, 1
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"SHARD={text}: must be k/N, e.g. SHARD=1/2 on one machine and SHARD=2/2 on another")
    index, count = (int(p) for p in parts)
    if not 1 <= index <= count:
        raise UserError(f"SHARD={text}: k must lie between 1 and N")
    return index, count


def oversubscription_warning(jobs, threads):
    """A warning when JOBS trainings side by side would each take every core (train.threads 0)."""
    if jobs > 1 and threads == 0:
        return (f"warning: train.threads is 0 (each training takes every core) and JOBS={jobs}: the {jobs} "
                "trainings compete for the cores; train.threads: 1 gives each its own core")
    return None


def fewest_seeds_for_a_verdict(alpha):
    """The fewest seeds whose smallest possible sign-flip p (classweights.statistics.sign_flip_p),
    2 / 2^n, lies below alpha: with fewer, no paired comparison can be called better or worse.
    Here, not in statistics.py, so that `make repro` warns without loading SciPy and scikit-learn."""
    n = 1
    while 2 / 2 ** n >= alpha:
        n += 1
    return n


def few_seeds_warning(params, where="params.yaml"):
    """A line when train.seeds are too few for any paired verdict to reach evaluate.alpha."""
    needed = fewest_seeds_for_a_verdict(params.evaluate.alpha)
    seeds = len(params.train.seeds)
    if seeds < needed:
        return (f"warning: {where}: {seeds} seed{'s' if seeds > 1 else ''} can never give a significant verdict "
                f"at alpha {params.evaluate.alpha} (the sign-flip test needs at least {needed}); the intervals "
                "still show the size of each difference")
    return None


# --- a grid point's names: the same on every machine

def point_label(point):
    """`imbalance.ratio=5 weights.strategy=balanced`: how a point is named in messages."""
    return " ".join(f"{key}={_yaml_value(value)}" for key, value in point.items())


def set_options(point):
    """`-S key=value` arguments for `dvc exp run` (values in YAML flow syntax, which the
    override parser reads back with the same types)."""
    return [arg for key, value in point.items() for arg in ("-S", f"{key}={_yaml_value(value)}")]


def _yaml_value(value):
    return json.dumps(value)  # strings quoted: a path or a word is never read as a number


def unweighted_group(point):
    """The part of a point that the unweighted arm depends on."""
    return tuple((k, json.dumps(v)) for k, v in point.items() if not k.startswith(NOT_READ_BY_UNWEIGHTED))


def point_name(point):
    """An experiment name for a point, the same on every machine: its values, readable,
    plus a short hash of the point (two points never share a name)."""
    values = "-".join(str(v) for v in point.values())
    readable = re.sub(r"[^A-Za-z0-9_]+", "_", values).strip("_")[:40]
    return f"sweep-{readable}-{hashlib.sha1(point_label(point).encode()).hexdigest()[:6]}"


def trainings_to_run(status):
    """From `dvc status --json`: the training stages that would run, and those among them whose
    recorded outputs are in no local cache (dvc.lock names outputs made elsewhere)."""
    changed = sorted(name for name in status if name.startswith(TRAINING_STAGES))
    unrestorable = [name for name in changed
                    if any(isinstance(change, dict) and "not in cache" in change.get("changed outs", {}).values()
                           for change in status[name])]
    return changed, unrestorable


def training_tasks(changed, shares=None):
    """The (arm, seed) training stages to run as tasks: one each (a cluster: any worker that
    joins takes the next), or, with shares (local workers), dealt round-robin into that many
    tasks. Each task pays a copy of the workspace, DVC's start-up and its check of the stages
    upstream (a few seconds; docs/scale-out.md), so locally, where every worker is there from the
    start and the trainings are alike, one task per worker pays it once."""
    count = min(shares or len(changed), len(changed))
    dealt = [tuple(changed[k::count]) for k in range(count)]
    return [Task(stages[0] if len(stages) == 1 else f"share {k + 1} of {count}", "training", len(stages),
                 targets=stages) for k, stages in enumerate(dealt)]


def run_order(points):
    """Points ordered so that each group's first point (which trains the unweighted arm)
    comes before every group's later points (which restore it from the run cache)."""
    seen, waves = {}, []
    for point in points:
        group = unweighted_group(point)
        waves.append(seen.get(group, 0))
        seen[group] = waves[-1] + 1
    return [point for _, point in sorted(zip(waves, points), key=lambda pair: pair[0])]


def shard(points, index, count):
    """This machine's share of SHARD=index/count: every count-th group of points that share
    an unweighted arm (so that arm trains on one machine only), counted from 1."""
    groups = list(dict.fromkeys(unweighted_group(p) for p in points))
    mine = set(groups[index - 1::count])
    return [p for p in points if unweighted_group(p) in mine]


def missing_points(points, done, shard_spec=(1, 1)):
    """The points of this shard, in queue order, and those of them with no finished experiment
    (done: the labels of the points that have one)."""
    points = run_order(points)
    if shard_spec[1] > 1:
        points = shard(points, *shard_spec)
    return points, [p for p in points if point_label(p) not in done]


def group_tasks(fixed, points, seeds, arm_task):
    """The tasks of the missing points that share an unweighted arm. Each point is a task: the
    first trains the arm and the others restore it from the run cache once that point has ended.
    With arm_task (workers enough to run every such point at once), a task of its own trains the
    arm and then all the points run side by side, so the longest chain is the arm plus one point,
    not two points. It costs a task more (a copy, the first stages again), so not when the
    workers would be busy anyway (docs/scale-out.md)."""
    tasks = [Task(point_name(p), "point", len(ARMS) * seeds, options=tuple(set_options({**fixed, **p})))
             for p in points]
    if not arm_task or len(tasks) == 1:  # a lone point trains its arm itself
        return [dataclasses.replace(tasks[0], later=tuple(tasks[1:]))]
    return [Task(f"unweighted arm of {tasks[0].name}", "unweighted arm", seeds,
                 options=tuple(set_options({**fixed, **points[0]})), later=tuple(tasks))]


def sweep_tasks(fixed, points, seeds, workers):
    """Every missing point as a task, grouped by the unweighted arm they share (group_tasks);
    arm tasks of their own when the workers can run every grouped point at once.
    seeds: {point_name: how many seeds the point trains}."""
    groups = {}
    for point in points:
        groups.setdefault(unweighted_group(point), []).append(point)
    arm_tasks = workers >= sum(len(g) for g in groups.values() if len(g) > 1)
    return [task for group in groups.values()
            for task in group_tasks(fixed, group, seeds[point_name(group[0])], arm_tasks)]
