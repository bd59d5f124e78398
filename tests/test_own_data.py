"""Your own data: a folder of images (one sub-folder a class) or an .npz file, any size, colour,
class count and imbalance, through the same pipeline. Fashion-MNIST exported to PNGs gives the
same splits and the same trained bytes as the fashion-mnist source; a generated colour data set
with a long tail runs end to end under real `dvc repro`; every bad input is one line."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from classweights import datasets
from classweights.datasets import FASHION_NAMES, load_fashion_mnist, load_folder
from classweights.errors import UserError
from classweights.imbalance import make_splits
from stages import fetch
from tools.sandbox import (TINY, commit, dvc, export_folder, folder_names, link_venv, make_project, ran_stages, run,
                           set_params, shipped_params)

ALL_STAGES = sorted(["check_params", "fetch", "preprocess", "compute_weights", "frozen_features", "train_unweighted@0",
                     "train_weighted@0", "evaluate"])  # one seed


def test_fashion_mnist_through_a_folder_of_pngs_gives_the_same_splits_and_the_same_trained_bytes(
        fashion_dir, tmp_path):
    from classweights.model import predict_proba, train_model

    folder, files, _ = fashion_dir
    data = shipped_params({"data": {"source": "fashion-mnist", "path": str(folder)}}).data
    fashion, _ = load_fashion_mnist(data, tmp_path, files=files)
    export_folder(fashion, folder_names(), tmp_path / "exported")
    exported, names, _ = load_folder(tmp_path / "exported", None)
    assert names == folder_names()
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert exported[key].dtype == fashion[key].dtype and np.array_equal(exported[key], fashion[key]), key

    params = shipped_params({**TINY, "imbalance": {"profile": "step", "ratio": 5, "n_max": 30}})
    outputs = []
    for raw in ({**fashion, "class_names": np.array(FASHION_NAMES)}, {**exported, "class_names": np.array(names)}):
        splits = make_splits(raw, params.imbalance, params.split)
        model, history = train_model({**splits, "class_names": raw["class_names"]}, params.train, seed=0)
        outputs.append((splits, predict_proba(model, splits["x_test"]).tobytes(), json.dumps(history)))
    (splits_a, proba_a, history_a), (splits_b, proba_b, history_b) = outputs
    for key in splits_a:
        assert np.array_equal(splits_a[key], splits_b[key]), key
    assert proba_a == proba_b and history_a == history_b


def write_image(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


COLOURS = {"sky": (40, 90, 230), "grass": (40, 200, 60), "sand": (230, 210, 120), "lava": (240, 60, 20)}
TAIL = {"sky": 48, "grass": 28, "sand": 12, "lava": 6}  # a natural long tail, ratio 8


def long_tail_folder(folder, rng):
    """Colour images of 40 x 32 with a long tail of class counts; two of them grey (PNG mode L),
    one 44 x 30 (resized to data.image_size)."""
    number = 0
    for name, count in TAIL.items():
        for _ in range(count):
            image = np.clip(np.array(COLOURS[name]) + rng.integers(-30, 30, (40, 32, 3)), 0, 255).astype(np.uint8)
            if number in (3, 50):
                image = image.mean(axis=2).astype(np.uint8)
            if number == 7:
                image = np.ascontiguousarray(np.resize(image, (44, 30, 3)))
            write_image(folder / name / f"img{number:03d}.png", image)
            number += 1


@pytest.fixture(scope="module")
def long_tail_project(subprocesses, tmp_path_factory):
    """A tiny project whose data is a generated colour long-tail folder under data/input, tracked by
    `dvc add`, after its first `dvc repro`."""
    project = make_project(tmp_path_factory.mktemp("long_tail"), {
        "data": {"source": "folder", "path": "data/input/tail", "image_size": [40, 32]},
        "imbalance": {"profile": "none"}, "split": {"test_fraction": 0.25}, "train": {"seeds": [0], "epochs": 1}})
    long_tail_folder(project / "data/input/tail", np.random.default_rng(0))
    dvc(project, "add", "data/input/tail")
    commit(project, "data")
    first = dvc(project, "repro")
    commit(project, "first run")
    return project, first


def test_a_colour_long_tail_folder_runs_end_to_end_with_its_class_names(long_tail_project):
    project, first = long_tail_project
    assert ran_stages(first) == ALL_STAGES
    provenance = json.loads((project / "data/provenance.json").read_text())
    assert provenance["class_names"] == ["grass", "lava", "sand", "sky"]  # the folder names, sorted
    assert provenance["image_shape"] == [40, 32, 3] and provenance["images_resized"] == 1
    assert provenance["colour"] == "colour (2 of 94 grey images converted to RGB)"
    assert provenance["images_per_class"] == {"train": [28, 6, 12, 48], "test": [0, 0, 0, 0]}
    counts = json.loads((project / "data/class_counts.json").read_text())
    assert counts["test"] == {"grass": 7, "lava": 2, "sand": 3, "sky": 12}  # a stratified quarter of each
    total = {name: counts["train"][name] + counts["val"][name] for name in counts["train"]}
    assert total == {"grass": 21, "lava": 4, "sand": 9, "sky": 36}  # profile none: the data's own counts
    # at most half of the largest class's 32 training images: lava 4 and sand 8, not grass 19
    assert counts["train"]["sky"] == 32 and counts["minority_classes"] == ["lava", "sand"]
    details = json.loads((project / "metrics/details/weighted.json").read_text())
    assert list(details["mean"]["per_class"]) == ["grass", "lava", "sand", "sky"]
    summary = (project / "reports/summary.md").read_text()
    ratio = counts["train"]["sky"] / min(counts["train"].values())  # the data's own imbalance, measured
    assert summary.startswith(f"# folder data/input/tail, own imbalance, ratio {ratio:.3g} (largest / smallest class);")
    assert "compute_weights: balanced: grass: " in first.stdout  # class names, not indices
    assert "preprocess: none profile, training images per class grass: " in first.stdout
    assert "minority classes: lava, sand (every class with at most 50% of the largest class's training" in summary
    assert "**The test set is imbalanced** (2 to 12 images a class, ratio 6 ≥ 1.5" in summary
    assert "| recall of class lava |" in summary and "Training images per class: grass: " in summary
    assert (project / "reports/per_class_recall.csv").read_text().splitlines()[1].startswith("grass,")
    comparison = json.loads((project / "metrics/comparison.json").read_text())
    assert comparison["weighted_vs_unweighted"]["worst_majority_recall"]["class"] in ("grass", "sky")
    proba = np.load(project / "models/weighted/seed_0/test_proba.npz")["proba"]
    assert proba.shape == (24, 4)


def test_editing_one_image_re_runs_fetch_and_everything_after_it_and_nothing_else(long_tail_project, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(long_tail_project[0], project, symlinks=True)
    assert ran_stages(dvc(project, "repro")) == []
    # a file beside the data set under data/input: not fetch's input, nothing runs
    (project / "data/input/README.md").write_text("notes\n")
    assert ran_stages(dvc(project, "repro")) == []
    # one image's pixels change: fetch and everything downstream (up to the split here, then
    # DVC's status names every later stage: no need to train to see it)
    edited = next((project / "data/input/tail/lava").iterdir())
    write_image(edited, np.full((40, 32, 3), 7, np.uint8))
    assert ran_stages(dvc(project, "repro", "preprocess")) == ["fetch", "preprocess"]
    status = json.loads(dvc(project, "status", "--json").stdout)
    assert sorted(status) == [stage for stage in ALL_STAGES if stage not in ("check_params", "fetch", "preprocess")]
    # (adding or removing an image changes the same folder hash, and the counts too)


def test_a_second_data_set_beside_the_first_changes_nothing_for_it_until_chosen(long_tail_project, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(long_tail_project[0], project, symlinks=True)
    lock = (project / "dvc.lock").read_text()
    rng = np.random.default_rng(0)
    for edit in range(2):  # added, then changed: each time tracked by DVC as the README says
        x = rng.integers(0, 256, (12, 20, 20), dtype=np.uint8)
        np.savez(project / "data/input/digits.npz", x=x, y=np.arange(12) % 3)
        dvc(project, "add", "data/input/digits.npz")
        assert dvc(project, "status").stdout.strip() == "Data and pipelines are up to date.", edit
    dvc(project, "remove", "data/input/digits.npz.dvc")  # and removed, as DVC removes what it tracks
    (project / "data/input/digits.npz").unlink()
    assert dvc(project, "status").stdout.strip() == "Data and pipelines are up to date."
    assert ran_stages(dvc(project, "repro")) == [] and (project / "dvc.lock").read_text() == lock
    np.savez(project / "data/input/digits.npz", x=x, y=np.arange(12) % 3)
    set_params(project, {"data": {"source": "npz", "path": "data/input/digits.npz", "image_size": None}})
    assert ran_stages(dvc(project, "repro", "fetch")) == ["check_params", "fetch"]  # chosen: it is fetch's input
    assert json.loads((project / "data/provenance.json").read_text())["origin"] == "data/input/digits.npz"


def test_make_sweep_on_your_own_folder_restores_its_unweighted_trainings_and_names_its_classes(
        long_tail_project, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(long_tail_project[0], project, symlinks=True)
    link_venv(project)
    (project / "own-sweep.yaml").write_text("grid:\n  weights.strategy: [sqrt_inverse]\n")
    result = run(project, "make", "-s", "-o", ".venv/.installed-requirements", "sweep", "SWEEP=own-sweep.yaml",
                 "JOBS=1")
    # the point shares the committed run's unweighted trainings: only its weighted arm trains
    assert "(arm, seed) trainings: 1 ran, 1 restored from the run cache" in result.stdout, result.stdout
    with open(project / "sweep/sweep.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["weights.strategy"] == "sqrt_inverse" and row["unweighted.mean.minority_recall"] != ""
    assert row["weighted_vs_unweighted.worst_majority_recall.class"] in ("grass", "sky")


# ---- bad input: one line on stderr, exit 2, nothing written --------------------------------------

@pytest.fixture(scope="module")
def bare_project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("bad_input"))


def grey(value=100, shape=(20, 20)):
    return np.full(shape, value, np.uint8)


def two_classes(root, per_class=3, shape=(20, 20)):
    for name in ("a", "b"):
        for i in range(per_class):
            write_image(root / name / f"{i}.png", grey(shape=shape))


def not_an_image(root):
    two_classes(root)
    (root / "a" / "3.png").write_bytes(b"this is text, not a PNG\n")


def truncated(root):
    two_classes(root)
    write_image(root / "b" / "0.png", np.random.default_rng(0).integers(0, 255, (20, 20), dtype=np.uint8))
    data = (root / "b" / "0.png").read_bytes()
    (root / "b" / "0.png").write_bytes(data[: len(data) // 2])  # the header is whole, the pixels cut off


def empty_class(root):
    two_classes(root)
    (root / "c").mkdir()


def one_class(root):
    for i in range(3):
        write_image(root / "only" / f"{i}.png", grey())


def too_few(root):
    two_classes(root)
    for path in list((root / "b").iterdir())[1:]:
        path.unlink()


def halves_differ(root):
    two_classes(root / "train")
    two_classes(root / "test")
    (root / "test" / "b").rename(root / "test" / "c")


def mixed_sizes(root):
    two_classes(root)
    write_image(root / "b" / "9.png", grey(shape=(24, 20)))


def save_npz(name, **arrays):
    def write(root):
        root.parent.mkdir(parents=True, exist_ok=True)
        np.savez(root.parent / name, **arrays)
    return write


X = np.zeros((6, 20, 20), np.uint8)
ABC = np.array(["a", "b", "c"])
BAD_INPUTS = [
    ("folder", "bad", not_an_image, ["data/input/bad/a/3.png: not a readable image"]),
    ("folder", "bad", truncated, ["data/input/bad/b/0.png: not a readable image", "truncated"]),
    ("folder", "bad", empty_class, ["data/input/bad/c: empty class folder"]),
    ("folder", "bad", one_class, ["data/input/bad: only 1 class folder(s) (only)", "at least 2 classes"]),
    ("folder", "bad", too_few, ["data/input/bad: class 'b' has 1 image(s); each class needs at least 3"]),
    ("folder", "bad", halves_differ, ["data/input/bad: train/ holds class folders ['a', 'b'] but test/ holds ['a', 'c']"]),
    ("folder", "bad", mixed_sizes, ["is 20 x 20 but", "is 20 x 24", "set data.image_size"]),
    ("folder", "missing", lambda root: None, ["data.path data/input/missing: not found"]),
    ("npz", "bad.npz", save_npz("bad.npz", x=X, y=np.array([0, 1, 2, 0, 1, 3]), class_names=ABC),
     ["data/input/bad.npz (x, y): label 3 is outside the classes 0..2"]),
    ("npz", "bad.npz", save_npz("bad.npz", x=X, y=np.array([0, 1, 0, 1, 0, -1])),
     ["data/input/bad.npz (x, y): label -1 is outside the classes 0..1"]),
    ("npz", "bad.npz", save_npz("bad.npz", x=X, y=np.array([0, 0, 0, 0, 0, 0]), class_names=np.array(["p"])),
     ["data/input/bad.npz: 1 class; the question needs at least 2 classes"]),
    ("npz", "bad.npz", save_npz("bad.npz", x=X, y=np.array([0, 1, 0, 1, 0, 0])),
     ["data/input/bad.npz: class '1' has 2 image(s); each class needs at least 3"]),
    ("npz", "bad.npz", save_npz("bad.npz", x=X, y=np.array([0, 1, 0, 1, 0, 1.5])),
     ["data/input/bad.npz (x, y): labels are float64; expected integers"]),
    ("npz", "bad.npz", save_npz("bad.npz", x=X, y=np.array([0, 1, 0, 1, 0])),
     ["data/input/bad.npz (x, y): labels have shape (5,); expected (6,), one per image"]),
    ("npz", "bad.npz", save_npz("bad.npz", x=X, y=np.array([{"a": 1}] * 6, dtype=object)),
     ["data/input/bad.npz: holds pickled objects, which are refused"]),
    ("npz", "bad.npz", save_npz("bad.npz", images=X), ["data/input/bad.npz: has arrays ['images']; expected x and y"]),
    ("npz", "bad.npz", lambda root: (root.parent.mkdir(parents=True, exist_ok=True), root.write_bytes(b"x = 1\n")),
     ["data/input/bad.npz: not an .npz file (not a zip archive)"]),
    ("npz", "missing.npz", lambda root: None, ["data.path data/input/missing.npz: not found"]),
]


@pytest.mark.parametrize("source, name, make, words", BAD_INPUTS, ids=[words[0][:60] for *_, words in BAD_INPUTS])
def test_a_bad_input_is_one_line_naming_the_file_and_nothing_is_written(bare_project, run_main, source, name, make,
                                                                        words):
    _fetch_fails_with(bare_project, run_main, source, name, make, words)


def test_a_folder_too_large_for_memory_is_refused_before_decoding(bare_project, run_main):
    def large(root):
        two_classes(root, per_class=40)

    # 80 small files, but resized to 8,000 x 8,000 they would be 80 x 64 MB = 4.8 GiB: refused from
    # the headers alone (decoding them would take those gigabytes and minutes)
    words = ["data/input/bad: 80 images x 8000 x 8000 x 1 bytes = 4.8 GiB decoded, above the 4 GiB",
             "set data.image_size smaller or use fewer images"]
    _fetch_fails_with(bare_project, run_main, "folder", "bad", large, words, image_size=[8000, 8000])


def test_an_npz_too_large_for_memory_is_refused_from_its_array_headers(bare_project, run_main):
    # 9 small images, but resized to 25,000 x 25,000 they would be 5.2 GiB: refused before loading
    x = np.zeros((9, 20, 20), np.uint8)
    words = ["data/input/big.npz: 9 images x 25000 x 25000 x 1 bytes = 5.2 GiB decoded, above the 4 GiB"]
    _fetch_fails_with(bare_project, run_main, "npz", "big.npz", save_npz("big.npz", x=x, y=np.arange(9) % 3), words,
                      image_size=[25000, 25000])


def _fetch_fails_with(project, run_main, source, name, make, words, image_size=None):
    """Run the fetch stage's main() (as its program does: conftest.run_main) in the project on the
    data make() writes under data/input."""

    input_dir = project / "data/input"
    for entry in input_dir.iterdir():
        if entry.name != "README.md":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    (project / "data/raw.npz").unlink(missing_ok=True)
    make(input_dir / name)
    set_params(project, {"data": {"source": source, "path": f"data/input/{name}", "image_size": image_size}})
    result = run_main(project, fetch.main)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (project / "data/raw.npz").exists() and not list(project.glob("data/.*partial"))


def test_the_memory_estimate_counts_images_height_width_and_channels():
    datasets.check_memory(4, 2 ** 14, 2 ** 14, 4, "x")  # exactly 4 GiB: allowed
    with pytest.raises(UserError, match=r"x: 5 images x 16384 x 16384 x 4 bytes = 5.0 GiB decoded"):
        datasets.check_memory(5, 2 ** 14, 2 ** 14, 4, "x")


def test_the_network_is_the_seed_s_at_28_by_28_grey_and_its_head_does_not_grow_with_the_image():
    from classweights.model import build_model

    def kinds(model):
        return [type(layer).__name__ for layer in model.layers]

    seed = build_model()
    # by hand: convolutions 320 + 18,496 + 36,928, Dense 3·3·64·128 + 128 = 73,856, softmax 1,290
    assert seed.count_params() == 130_890 and kinds(seed)[8:10] == ["Conv2D", "Flatten"]
    # colour 224 x 224, 4 classes: first convolution 3·3·3·32 + 32 = 896, Dense 64·128 + 128 = 8,320
    # after global average pooling, softmax 516: 65,156 at any size above 28 x 28
    for shape in [(224, 224, 3), (40, 32, 3)]:
        model = build_model(input_shape=shape, num_classes=4)
        assert model.count_params() == 65_156 and "GlobalAveragePooling2D" in kinds(model), shape
        assert model.output_shape == (None, 4)


# ---- own data that cannot be silently wrong ------------------------------------------------------

def test_scikit_learn_s_digits_cast_to_uint8_are_refused_with_the_scaling_that_fixes_them(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()  # 8 x 8 images of values 0..16
    np.savez(tmp_path / "digits.npz", x=digits.images.astype(np.uint8), y=digits.target)
    with pytest.raises(UserError) as error:
        datasets.load_npz(tmp_path / "digits.npz", [24, 24])
    assert str(error.value) == (f"{tmp_path / 'digits.npz'}: the brightest pixel is 16, far below 255: images must be "
                                "uint8 0-255; scale them, e.g. x = (x * 255 / 16).round().astype(np.uint8)")
    np.savez(tmp_path / "digits.npz", x=(digits.images * 255 / 16).round().astype(np.uint8), y=digits.target)
    arrays, names, _ = datasets.load_npz(tmp_path / "digits.npz", [24, 24])
    assert names == [str(d) for d in range(10)] and arrays["x_train"].max() == 255


@pytest.mark.parametrize("class_names", [None, ["zebra", "ant", "cat"]])
def test_string_labels_are_numbered_for_the_user_and_keep_their_names(tmp_path, class_names):
    labels = np.array(["cat", "zebra", "ant"] * 4)
    x = np.random.default_rng(0).integers(0, 256, (12, 20, 20), dtype=np.uint8)
    extra = {} if class_names is None else {"class_names": np.array(class_names)}
    np.savez(tmp_path / "animals.npz", x=x, y=labels, **extra)
    arrays, names, provenance = datasets.load_npz(tmp_path / "animals.npz", None)
    expected = class_names or ["ant", "cat", "zebra"]
    assert names == expected
    assert [expected[label] for label in arrays["y_train"]] == labels.tolist()  # each image keeps its class
    assert provenance["labels"].startswith(f"strings, numbered 0..2 in {'sorted' if class_names is None else 'class'}")


def test_a_string_label_missing_from_class_names_is_named(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 20, 20), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.array(["a", "b", "c"] * 2), class_names=np.array(["a", "b"]))
    with pytest.raises(UserError, match=r"label 'c' in y is not in class_names \['a', 'b'\]"):
        datasets.load_npz(tmp_path / "a.npz", None)


def test_os_litter_and_hidden_files_are_skipped_and_counted(tmp_path):
    two_classes(tmp_path / "shop" / "train")
    two_classes(tmp_path / "shop" / "test")
    for litter in ("train/a/Thumbs.db", "train/b/desktop.ini", "test/a/.DS_Store", "train/.hidden.png",
                   "Thumbs.db"):
        (tmp_path / "shop" / litter).write_bytes(b"not an image")
    arrays, names, provenance = load_folder(tmp_path / "shop", None)
    assert names == ["a", "b"] and len(arrays["y_train"]) == 6 and len(arrays["y_test"]) == 6
    assert provenance["layout"] == "train/ and test/"
    assert provenance["skipped_files"]["count"] == 5
    assert provenance["skipped_files"]["examples"] == [".DS_Store", ".hidden.png", "Thumbs.db", "desktop.ini"]
