"""Where a run was made: the record evaluate writes, and the line `make repro` prints when this
machine is of another kind than the one that made the committed results."""
import json
import platform
import sys

from classweights import machine
from orchestration.scaleout import machine_kind_warning
from tools.sandbox import commit, make_project, run

# Two processors as /proc/cpuinfo lists them (shortened): the first one's flags decide.
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 sha_ni avx512f avx512_bf16 vaes

processor\t: 1
model name\t: something else
flags\t\t: fpu amx_tile
"""


def test_the_record_names_the_cpu_its_dispatch_features_and_the_versions():
    record = machine.describe(threads=1, cpuinfo_text=CPUINFO)
    assert record["cpu"] == "AMD EPYC 7B13 (cpu family 25, model 1)"
    # only the instruction-set extensions oneDNN dispatches on, sorted; sse2, ssse3, sha_ni, vaes are not
    assert record["isa"] == ["avx", "avx2", "avx512_bf16", "avx512f", "f16c", "fma", "sse4_1", "sse4_2"]
    assert record["train_threads"] == 1 and record["cores"] >= 1
    assert record["python"] == platform.python_version()
    import numpy
    assert record["numpy"] == numpy.__version__
    assert record["tensorflow"] and record["keras"] and record["dvc"]  # read from package metadata
    assert machine.kind(record) == {"cpu": record["cpu"], "isa": record["isa"], "tensorflow": record["tensorflow"]}


def test_the_record_keeps_the_system_and_c_library_but_not_the_kernel_s_build():
    # a host's kernel update changes platform.release() (e.g. '6.18.44-fc-v782'), not the numbers;
    # the record is in metrics/details/, which dvc.lock hashes
    record = machine.describe(threads=1, cpuinfo_text=CPUINFO)
    libc, version = platform.libc_ver()
    assert record["os"] == f"{platform.system()} {platform.machine()}" + (f", {libc} {version}" if libc else "")
    assert platform.release() not in record["os"]


def test_a_cpuinfo_without_a_model_name_falls_back_to_the_platform():
    record = machine.describe(threads=0, cpuinfo_text="processor\t: 0\nflags\t\t: avx2\n")
    assert record["cpu"] == (platform.processor() or platform.machine()) and record["isa"] == ["avx2"]


def test_the_warning_names_what_differs_and_nothing_when_the_kind_is_the_same():
    here = machine.describe(threads=1, cpuinfo_text=CPUINFO)
    assert machine.kind_warning(here, {**here, "cores": 64, "dvc": "9.9", "train_threads": 0}) is None
    assert machine.kind_warning(None, here) is None
    other = {**here, "cpu": "AMD EPYC (cpu family 26, model 2)", "isa": [*here["isa"], "avx512_vp2intersect"]}
    assert machine.kind_warning(here, other) == (
        f"the committed results were made on AMD EPYC 7B13 (cpu family 25, model 1), TensorFlow {here['tensorflow']}; "
        f"this machine is AMD EPYC (cpu family 26, model 2) with avx512_vp2intersect, TensorFlow "
        f"{here['tensorflow']}: expect different numbers and a changed dvc.lock")
    newer = {**here, "tensorflow": "9.0.0"}
    assert "this machine is AMD EPYC 7B13 (cpu family 25, model 1), TensorFlow 9.0.0:" in machine.kind_warning(here, newer)


def test_make_repro_compares_with_the_record_committed_at_head(tmp_path):
    project = make_project(tmp_path)
    assert machine_kind_warning(project) is None  # nothing committed yet: nothing to say
    record = project / "metrics/details/machine.json"
    record.parent.mkdir(parents=True)
    here = machine.describe(threads=1)
    record.write_text(json.dumps(here))
    commit(project, "a run made here")
    assert machine_kind_warning(project) is None
    record.write_text(json.dumps({**here, "cpu": "a CPU of another kind"}))  # not committed: HEAD still decides
    assert machine_kind_warning(project) is None
    commit(project, "a run made elsewhere")
    assert machine_kind_warning(project).startswith("the committed results were made on a CPU of another kind, ")
    record.write_text("not json")
    commit(project, "a damaged record")
    assert machine_kind_warning(project) is None
    assert run(project, "git", "status", "--porcelain").stdout == ""


def test_make_repro_prints_the_line_before_it_runs_anything(subprocesses, tmp_path):
    project = make_project(tmp_path, {"data": {"source": "mnist", "path": "no-such-file.npz"}})  # fetch stops at once
    record = project / "metrics/details/machine.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({**machine.describe(threads=1), "cpu": "a CPU of another kind"}))
    commit(project, "a run made elsewhere")
    result = run(project, sys.executable, "-m", "orchestration.scaleout", "repro", "--jobs", "1", check=False)
    assert result.stdout.splitlines()[0].startswith("the committed results were made on a CPU of another kind, ")
    assert result.stdout.count("expect different numbers and a changed dvc.lock") == 1
    assert result.returncode != 0 and "no-such-file.npz" in result.stderr
