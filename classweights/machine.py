"""Where a run was made: the CPU and the software that shape its numbers.

TensorFlow's CPU kernels come from oneDNN, which picks them by the instruction-set features
the CPU reports, so the same code, params and seeds give other trained models on a CPU with
other features (docs/statistics.md "Where the numbers were made"). A run's record says which
machine made it; its "kind" (CPU model, the features oneDNN dispatches on, TensorFlow's
version) is what two runs must share for their numbers to match. Imports no TensorFlow:
versions are read from the installed packages' metadata.
"""
import os
import platform
from importlib import metadata
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The cpuinfo flags of the instruction-set extensions oneDNN chooses kernels by (SSE4.1 up to
# AVX2, AVX-512 and its VNNI/BF16/FP16 parts, AVX-VNNI, AMX, FMA, F16C).
DISPATCH_PREFIXES = ("sse4_", "avx", "amx", "fma", "f16c")
PACKAGES = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-intel"), "keras": ("keras",),
            "numpy": ("numpy",), "dvc": ("dvc",)}
KIND_KEYS = ("cpu", "isa", "tensorflow")


def _cpuinfo(text):
    """(model, isa) from /proc/cpuinfo's first processor: the model name with its family and
    model numbers (a virtual machine may report only 'AMD EPYC'), and the dispatch flags."""
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    numbers = ", ".join(f"{key} {fields[key]}" for key in ("cpu family", "model") if fields.get(key))
    isa = sorted(flag for flag in fields.get("flags", "").split() if flag.startswith(DISPATCH_PREFIXES))
    return (f"{name} ({numbers})" if numbers else name), isa


def _version(names):
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def describe(threads, cpuinfo_text=None):
    """This machine's record: CPU model, dispatch features, cores, train.threads, versions, OS
    (without the kernel's build)."""
    if cpuinfo_text is None:
        cpuinfo_text = CPUINFO.read_text() if CPUINFO.exists() else ""
    cpu, isa = _cpuinfo(cpuinfo_text)
    return {"cpu": cpu, "isa": isa, "cores": os.cpu_count(), "train_threads": threads,
            "python": platform.python_version(), **{key: _version(names) for key, names in PACKAGES.items()},
            "os": operating_system()}


def operating_system():
    """The system, architecture and C library ('Linux x86_64, glibc 2.36'): not the kernel's release
    and build, which change with a host's kernel update, not the numbers (the record is hashed in
    dvc.lock)."""
    libc, version = platform.libc_ver()
    return f"{platform.system()} {platform.machine()}" + (f", {libc} {version}" if libc else "")


def kind(record):
    """What two machines must share for a run to give the same numbers."""
    return {key: record.get(key) for key in KIND_KEYS}


def line(record):
    """The record in one line, as the foot of reports/summary.md and of a RESULTS.md section shows it."""
    return (f"Machine: {record['cpu']} with {', '.join(record['isa']) or 'no listed vector extensions'}; "
            f"{record['cores']} cores, train.threads {record['train_threads']}; Python {record['python']}, "
            f"TensorFlow {record['tensorflow']}, Keras {record['keras']}, NumPy {record['numpy']}, "
            f"DVC {record['dvc']}; {record['os']}.")


def _kind_words(record, other):
    """A record's kind, naming only the features the other kind lacks (the full list is long)."""
    extra = [flag for flag in record.get("isa") or [] if flag not in (other.get("isa") or [])]
    features = f" with {', '.join(extra)}" if extra else ""
    return f"{record.get('cpu')}{features}, TensorFlow {record.get('tensorflow')}"


def kind_warning(committed, current):
    """One line when this machine is of another kind than the one that made the committed results;
    None when they are of one kind (or nothing was recorded)."""
    if not committed or kind(committed) == kind(current):
        return None
    return (f"the committed results were made on {_kind_words(committed, current)}; this machine is "
            f"{_kind_words(current, committed)}: expect different numbers and a changed dvc.lock")
