"""dvc.yaml's code deps derived from the stage scripts' imports: a missing dep would let DVC
serve stale results after an edit, an extra one would re-run a stage for nothing."""
import ast
import copy

import networkx as nx
import pytest
import yaml

from classweights.paths import ARMS, SECONDS, TRAINING_SECONDS, model_dir, seconds_file
from orchestration import plan, sweep
from tools.sandbox import ROOT, lock_text, wall_clock

PROJECT_PACKAGES = ("classweights", "stages")
ALL_PACKAGES = (*PROJECT_PACKAGES, "orchestration", "tools", "bench")


def _imported_modules(path, packages=PROJECT_PACKAGES, root=ROOT):
    """Modules of packages a file imports anywhere (lazy imports in functions included), except
    under `if __name__ == "__main__":`, which runs only when the file is the program."""
    tree = ast.parse(path.read_text())
    main_blocks = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    skipped = {id(n) for block in main_blocks for n in ast.walk(block)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {name for name in names if name.split(".")[0] in packages and _module_file(name, root).is_file()}


def _module_file(module, root=ROOT):
    return root / (module.replace(".", "/") + ".py")


def code_deps(script_module):
    """Every project source file the module runs, transitively, as paths relative to the root."""
    seen, todo = set(), [script_module]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imported_modules(_module_file(module)))
    return {str(_module_file(m).relative_to(ROOT)) for m in seen}


def stage_bodies(dvc_yaml):
    return {name: stage.get("do", stage) for name, stage in dvc_yaml["stages"].items()}


def declared_params(body):
    """A stage's params as plain keys: `- key` entries and `- params.yaml: [keys]` entries alike."""
    keys = []
    for entry in body.get("params", []):
        keys.extend((entry.get("params.yaml") or []) if isinstance(entry, dict) else [entry])  # null: the whole file
    return keys


def dep_differences(dvc_yaml):
    """{stage: (missing code deps, listed .py deps the script never imports)} for every stage that differs."""
    differences = {}
    for name, body in stage_bodies(dvc_yaml).items():
        script = body["cmd"].split()[2]  # python -m stages.X ...
        derived = code_deps(script)
        listed = {dep for dep in body["deps"] if dep.endswith(".py")}
        if derived != listed:
            differences[name] = (sorted(derived - listed), sorted(listed - derived))
    return differences


DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_stage_lists_exactly_the_code_it_imports():
    assert dep_differences(DVC_YAML) == {}


@pytest.mark.parametrize("stage", sorted(DVC_YAML["stages"]))
def test_deleting_any_code_dep_is_caught(stage):
    broken = copy.deepcopy(DVC_YAML)
    body = stage_bodies(broken)[stage]
    removed = next(dep for dep in body["deps"] if dep.startswith("classweights/"))
    body["deps"].remove(removed)
    assert dep_differences(broken) == {stage: ([removed], [])}


def test_the_unweighted_arm_does_not_depend_on_anything_of_the_weights():
    # a weights.* edit must never re-train it, and sweeps restore it from the run cache
    body = stage_bodies(DVC_YAML)["train_unweighted"]
    assert not {"classweights/weights.py", "data/class_weights.json"} & set(body["deps"])
    assert not [param for param in declared_params(body) if param.startswith("weights")]


def test_no_library_module_imports_the_command_line_module():
    importers = [path.name for path in (ROOT / "classweights").glob("*.py")
                 if "classweights.cli" in _imported_modules(path)]
    assert importers == []


def test_the_arms_share_their_training_params_and_only_the_remedy_arm_reads_the_remedy():
    # an edit of the remedy (loss, how and when the weights apply) re-runs the weighted arm (and
    # evaluate) only, never compute_weights nor the unweighted arm
    bodies = stage_bodies(DVC_YAML)
    remedy = ["weights.apply", "weights.defer_epoch", "loss"]
    assert declared_params(bodies["train_weighted"]) == declared_params(bodies["train_unweighted"]) + remedy
    assert not [p for p in declared_params(bodies["train_unweighted"]) if p.startswith(("weights", "loss"))]
    assert "train.epochs" in declared_params(bodies["train_unweighted"])
    assert declared_params(bodies["compute_weights"]) == ["weights.strategy", "weights.beta"]


def test_the_training_stages_are_the_arms_named_once_in_the_code():
    trained = {name: body for name, body in stage_bodies(DVC_YAML).items() if name.startswith("train_")}
    assert list(trained) == [f"train_{arm}" for arm in ARMS]
    for arm in ARMS:
        body = trained[f"train_{arm}"]
        assert f"--arm {arm} " in body["cmd"]
        assert body["outs"] == [str(model_dir(arm, "${item}")), f"{seconds_file(arm, '${item}')}"]
    assert plan.TRAINING_STAGES == tuple(f"{name}@" for name in trained)


def _outs(body):
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in body.get("outs", [])]


def params_read_for(stage, bodies):
    """The params a stage and every stage it takes outputs from declare, plus the one its foreach
    iterates over: everything whose change can change that stage's outputs."""
    params, todo, seen = set(), [stage], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        body = bodies[name]
        params.update(declared_params(body))
        foreach = DVC_YAML["stages"][name].get("foreach")
        if isinstance(foreach, str):
            params.add(foreach.strip("${}"))
        todo.extend(other for other, other_body in bodies.items()
                    if set(_outs(other_body)) & set(body.get("deps", [])))
    return params


def test_the_sweeps_unweighted_groups_follow_what_dvc_yaml_gives_the_unweighted_arm():
    # points that differ only in keys NOT_READ_BY_UNWEIGHTED share the unweighted arm's trainings:
    # no key the arm (or a stage upstream of it) reads may be among them, and every other key
    # dvc.yaml declares must be, or sweeps would train the same unweighted models twice
    bodies = stage_bodies(DVC_YAML)
    read = params_read_for("train_unweighted", bodies)
    assert {"data", "imbalance", "split", "train.epochs", "train.seeds"} <= read
    assert sorted(p for p in read if f"{p}.".startswith(plan.NOT_READ_BY_UNWEIGHTED)) == []
    declared = {p for body in bodies.values() for p in declared_params(body)}
    unread = sorted(p for p in declared - read if not any(p.startswith(f"{r}.") or p == r for r in read))
    assert unread and all(f"{p}.".startswith(plan.NOT_READ_BY_UNWEIGHTED) for p in unread), unread  # a section too


def _top_level_imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package, above", [
    ("classweights", {"stages", "orchestration", "tools", "bench", "dvc"}),
    ("stages", {"orchestration", "tools", "bench", "dvc"}),
    ("orchestration", {"tools", "bench"}),
])
def test_the_science_and_the_stages_never_reach_up_into_orchestration_or_dvc(package, above):
    """The rooms stand on each other: the science (classweights) at the bottom, the stage scripts on
    it, orchestration above both; none imports DVC itself (orchestration only through its
    adapter, test_first_hour) nor the test and benchmark tools."""
    reaching_up = {str(path.relative_to(ROOT)): sorted(_top_level_imports(path) & above)
                   for path in sorted((ROOT / package).glob("*.py"))}
    assert {path: names for path, names in reaching_up.items() if names} == {}
    assert reaching_up  # the package was found and read


def test_the_wall_clock_outputs_are_the_only_paths_named_seconds():
    # tools/sandbox compares two runs' dvc.lock and metrics leaving out every path with "seconds" in it:
    # exactly the trainings' seconds files, evaluate's dependency on them and its mean of them
    named = []
    for body in stage_bodies(DVC_YAML).values():
        named += [*body.get("deps", []), *_outs(body), *_outs({"outs": body.get("metrics", [])})]
    paths = {path for path in named if wall_clock(path)}
    assert paths == {str(SECONDS), str(TRAINING_SECONDS), *(str(seconds_file(arm, "${item}")) for arm in ARMS)}
    assert not wall_clock(model_dir("weighted", 0)) and wall_clock(seconds_file("weighted", 0))


def test_lock_text_leaves_out_the_seconds_hashes_and_nothing_else(tmp_path):
    def lock(seconds_md5, model_md5):
        return {"schema": "2.0", "stages": {
            "train_weighted@0": {"cmd": "python -m stages.train --arm weighted --seed 0",
                                 "deps": [{"path": "data/splits.npz", "hash": "md5", "md5": "aa", "size": 1}],
                                 "outs": [{"path": "models/weighted/seed_0", "hash": "md5", "md5": model_md5,
                                           "size": 9, "nfiles": 3},
                                          {"path": "metrics/seconds/weighted/seed_0.json", "hash": "md5",
                                           "md5": seconds_md5, "size": 25}]},
            "evaluate": {"cmd": "python -m stages.evaluate",
                         "deps": [{"path": "metrics/seconds", "hash": "md5", "md5": f"{seconds_md5}.dir", "size": 50,
                                   "nfiles": 2}]}}}

    texts = {}
    for name, hashes in {"first": ("s1", "m1"), "slower": ("s2", "m1"), "other model": ("s1", "m2")}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "dvc.lock").write_text(yaml.safe_dump(lock(*hashes), sort_keys=False))
        texts[name] = lock_text(tmp_path / name)
    assert texts["first"] == texts["slower"] and texts["first"] != texts["other model"]
    assert list(yaml.safe_load(texts["first"])["stages"]) == ["train_weighted@0", "evaluate"]  # the order kept


def import_graph(root=ROOT):
    """{module: the project modules it imports} over every module of the project's packages."""
    graph = nx.DiGraph()
    for package in ALL_PACKAGES:
        for path in sorted((root / package).glob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            graph.add_node(module)
            graph.add_edges_from((module, name) for name in _imported_modules(path, ALL_PACKAGES, root)
                                 if name != module and not name.endswith("__init__"))
    return graph


def import_cycles(graph):
    return [" -> ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(graph)]


def test_no_two_project_modules_import_each_other_even_through_others():
    """One direction between any two modules (lazy imports in functions count too): a circle means
    neither can be read, tested or changed without the other."""
    graph = import_graph()
    assert import_cycles(graph) == []
    assert graph.has_edge("orchestration.scaleout", "orchestration.sweep")  # the lazy import was read
    assert graph.has_edge("stages.train", "classweights.model")


def test_an_import_circle_is_named_module_by_module(tmp_path):
    for package in ALL_PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "orchestration/a.py").write_text("from orchestration import b\n")
    (tmp_path / "orchestration/b.py").write_text("def f():\n    import orchestration.c\n")  # lazy counts
    (tmp_path / "orchestration/c.py").write_text("from orchestration.a import f\n")
    cycles = import_cycles(import_graph(tmp_path))
    assert len(cycles) == 1 and set(cycles[0].split(" -> ")) == {"orchestration.a", "orchestration.b",
                                                                  "orchestration.c"}
