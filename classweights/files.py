"""Atomic file output and safe loading: a file under its final name is always complete."""
import contextlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from classweights.errors import UserError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    Works for files and directories. On any exception (Ctrl-C included) the
    temporary is removed, so nothing half-written is left under either name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    _remove(tmp)
    try:
        yield tmp
        _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path, data):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; run the stage that writes it first (dvc repro)")
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})")


def write_arrays(path, **arrays):
    """Save named arrays uncompressed (fast to read back) in one .npz file."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def write_stable_arrays(path, **arrays):
    """write_arrays without the time of writing (np.savez stamps each entry with it): the same
    arrays give the same bytes, so DVC's hash of a stage's input holds when its producer re-runs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.asarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), entry.getvalue())
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def read_arrays(path, names):
    """Load the named arrays from an .npz file with pickle disabled."""
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "missing"
        raise UserError(f"{path}: is {what}; expected an .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise UserError(f"{path}: has no array {missing[0]!r}; expected arrays {', '.join(names)}")
            return {name: archive[name] for name in names}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise UserError(f"{path}: not a readable .npz file ({error})")
