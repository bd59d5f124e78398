"""`dvc repro` of the whole pipeline, as every way of running it ends (`make repro` with any JOBS,
`make restore`, `make repro CLUSTER=…`): which trainings are left to run, and a serial
`dvc repro` that restores what the caches hold and keeps dvc.lock in pipeline order."""
from classweights.paths import ARMS
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


def serial_repro(*repro_args, forget_unrestorable=True):
    """`dvc repro [repro_args]`, after dropping the lock entries of trainings that no cache here
    holds (so that those the run cache knows are restored, not re-trained; forget_unrestorable
    False: the caller has dropped them already); dvc.lock in pipeline order."""
    if forget_unrestorable:
        experiments.forget_lock_entries(trainings_to_run()[1])
    code = experiments.repro(*repro_args)
    # DVC appends a stage it restores to the end of the lock: without this the same run gives a
    # dvc.lock that differs in order only, and a fresh clone's `make repro` leaves git status dirty.
    experiments.order_lock(experiments.stage_names())
    return code
