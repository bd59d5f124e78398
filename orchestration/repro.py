"""`dvc repro` of the whole pipeline, as every way of running it ends (`make repro` with any JOBS,
`make restore`, `make repro CLUSTER=…`): which trainings are left to run, and a serial
`dvc repro` that restores what the caches hold and keeps dvc.lock in pipeline order."""
import shutil
from pathlib import Path

from classweights.params import load_params
from classweights.paths import ARMS, model_dir, seconds_file
from orchestration import experiments

TRAINING_STAGES = tuple(f"train_{arm}@" for arm in ARMS)  # dvc.yaml's foreach stages, one per (arm, seed)


def trainings_to_run():
    """Training stages `dvc status` reports as changed, and those among them whose recorded
    outputs are in no local cache (`dvc.lock` names outputs made elsewhere)."""
    status = experiments.changed_stages()
    changed = sorted(name for name in status if name.startswith(TRAINING_STAGES))
    unrestorable = [name for name in changed
                    if any(isinstance(change, dict) and "not in cache" in change.get("changed outs", {}).values()
                           for change in status[name])]
    return changed, unrestorable


def remove_stale_models(seeds, root=Path(".")):
    """Delete every training's outputs (models/<arm>/seed_N/, metrics/seconds/<arm>/seed_N.json) for
    each N not in seeds; return what was deleted.

    evaluate depends on the whole models/<arm> and metrics/seconds folders (DVC cannot template a
    list of them), and DVC leaves the outputs of a seed dropped from train.seeds in place: they
    would enter evaluate's hashes, and after `make restore` evaluate would run again and change
    dvc.lock. They are in DVC's cache and run cache, so a later run with those seeds restores them."""
    current = {root / path for arm in ARMS for seed in seeds for path in (model_dir(arm, seed), seconds_file(arm, seed))}
    found = [path for arm in ARMS for pattern in (model_dir(arm, "*"), seconds_file(arm, "*"))
             for path in sorted(root.glob(str(pattern)))]
    stale = [path for path in found if path not in current]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return stale


def serial_repro(*repro_args, forget_unrestorable=True):
    """`dvc repro [repro_args]`, after removing the models of seeds no longer in train.seeds and
    dropping the lock entries of trainings that no cache here holds (so that those the run cache
    knows are restored, not re-trained; forget_unrestorable False: the caller has dropped them
    already); dvc.lock in pipeline order."""
    remove_stale_models(load_params().train.seeds)
    if forget_unrestorable:
        experiments.forget_lock_entries(trainings_to_run()[1])
    named = []
    code = experiments.repro(*repro_args, git_files=named)
    # DVC appends a stage it restores to the end of the lock: without this the same run gives a
    # dvc.lock that differs in order only, and a fresh clone's `make repro` leaves git status dirty.
    experiments.order_lock(experiments.stage_names())
    advice = experiments.git_add_advice(named)  # only when dvc.lock (or a file DVC named) really changed
    if advice:
        print(advice, flush=True)
    return code
