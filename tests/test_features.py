"""Feature-vector data (a CSV table, an .npz of rows) and the mlp backbone, on scikit-learn's real
tables: what loads, what is refused in one line, and a real `dvc repro` on a CSV."""
import csv
import json
import sys

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from classweights.datasets import load_csv, load_source
from classweights.errors import UserError
from classweights.imbalance import make_splits
from classweights.params import check_backbone
from tools.sandbox import commit, dvc, link_venv, make_project, ran_stages, run, set_params, shipped_params


def wine_table():
    """load_wine as a table: 13 numeric features and the class names as labels (59 / 71 / 48 rows)."""
    wine = load_wine(as_frame=True)
    table = wine.frame.drop(columns="target")
    table["cultivar"] = np.array(wine.target_names)[wine.target]
    return table, wine


def cancer_table(malignant=60):
    """load_breast_cancer with all 357 benign rows and only the first `malignant` malignant ones:
    a natural imbalance, labels as names."""
    cancer = load_breast_cancer(as_frame=True)
    table = cancer.frame.drop(columns="target")
    table["diagnosis"] = np.array(cancer.target_names)[cancer.target]
    keep = (cancer.target == 1) | (cancer.target.eq(0).cumsum() <= malignant)
    return table[keep.to_numpy()].reset_index(drop=True)


def test_a_csv_table_loads_as_float32_rows_with_its_label_names_sorted(tmp_path):
    table, wine = wine_table()
    table.to_csv(tmp_path / "wine.csv", index=False)
    arrays, names, provenance = load_csv(tmp_path / "wine.csv", "cultivar")
    assert names == ["class_0", "class_1", "class_2"]
    assert arrays["x_train"].dtype == np.float32 and arrays["x_train"].shape == (178, 13)
    np.testing.assert_allclose(arrays["x_train"], wine.data.to_numpy(), rtol=1e-6)  # float32 of the CSV's numbers
    assert np.array_equal(arrays["y_train"], wine.target.to_numpy())
    assert provenance["feature_columns"] == list(wine.feature_names) and len(arrays["y_test"]) == 0


def test_numeric_labels_sort_as_numbers_and_a_test_file_is_the_test_half(tmp_path):
    table, wine = wine_table()
    table["cultivar"] = wine.target.map({0: 10, 1: 2, 2: 7})  # 2 < 7 < 10, not "10" < "2" < "7"
    table.iloc[::4].to_csv(tmp_path / "test.csv", index=False)
    table.drop(index=table.index[::4]).to_csv(tmp_path / "train.csv", index=False)
    arrays, names, provenance = load_csv(tmp_path / "train.csv", "cultivar", tmp_path / "test.csv")
    assert names == ["2", "7", "10"]
    assert len(arrays["y_train"]) == 133 and len(arrays["y_test"]) == 45
    assert np.array_equal(arrays["y_test"], wine.target.to_numpy()[::4].choose([2, 0, 1]))  # 10 -> 2, 2 -> 0, 7 -> 1
    assert provenance["test_file"]["path"] == str(tmp_path / "test.csv")


def test_the_csv_source_holds_out_a_stratified_test_split_keeping_the_natural_imbalance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/input").mkdir(parents=True)
    cancer_table().to_csv(tmp_path / "data/input/cancer.csv", index=False)
    params = shipped_params({"data": {"source": "csv", "path": "data/input/cancer.csv", "label_column": "diagnosis"},
                             "imbalance": {"profile": "none"}, "split": {"test_fraction": 0.2}})
    raw, provenance = load_source(params.data)
    assert provenance["class_names"] == ["benign", "malignant"] and provenance["features_per_row"] == 30
    assert provenance["images_per_class"]["train"] == [357, 60]
    splits = make_splits(raw, params.imbalance, params.split)
    assert np.bincount(splits["y_test"]).tolist() == [72, 12]  # a stratified fifth (ceil(0.2 * 417) = 84 rows)
    assert splits["x_train"].dtype == np.float32 and splits["x_train"].shape[1] == 30


def test_an_npz_of_feature_rows_loads_as_float32(tmp_path):
    _, wine = wine_table()
    np.savez(tmp_path / "wine.npz", x=wine.data.to_numpy(), y=wine.target.to_numpy())
    arrays, _ = load_source(shipped_params().data.model_copy(update={"source": "npz",
                                                                     "path": str(tmp_path / "wine.npz")}))
    assert arrays["class_names"].tolist() == ["0", "1", "2"] and arrays["x_train"].dtype == np.float32 and arrays["x_train"].shape == (178, 13)


# (change to the wine table, words of the one-line message)
BAD_TABLES = [
    (lambda t: t.rename(columns={"cultivar": "kind"}), ["data.label_column = 'cultivar': not a column", "kind"]),
    (lambda t: t.assign(alcohol=["red"] + t["alcohol"].tolist()[1:]),
     ["column 'alcohol' is not numeric (data row 1: 'red')", "encode categories"]),
    (lambda t: t.assign(hue=np.nan), ["column 'hue' is empty"]),
    (lambda t: t.assign(hue=t["hue"].where(t.index != 5)), ["column 'hue' has 1 missing value(s), the first in data row 6"]),
    (lambda t: t.assign(cultivar="class_0"), ["column 'cultivar' holds a single class ('class_0')", "at least 2"]),
    (lambda t: t[t["cultivar"] != "class_2"].iloc[:61], ["class 'class_1' has 2 row(s)", "at least 3"]),
    (lambda t: t[["cultivar"]], ["no feature column beside the label column 'cultivar'"]),
]


@pytest.mark.parametrize("change, words", BAD_TABLES, ids=[words[0][:40] for _, words in BAD_TABLES])
def test_a_bad_table_is_one_line_naming_what_is_wrong(tmp_path, change, words):
    table, _ = wine_table()
    change(table).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError) as caught:
        load_csv(tmp_path / "bad.csv", "cultivar")
    message = str(caught.value)
    assert all(word in message for word in words) and "\n" not in message, message


@pytest.mark.parametrize("backbone, shape, words", [
    ("mlp", (28, 28), ["model.backbone = 'mlp': the data are images (28 x 28)", "cnn, resnet, keras:NAME"]),
    ("cnn", (13,), ["model.backbone = 'cnn': the data are feature vectors (13 features a row)", "allowed: mlp"]),
    ("resnet", (13,), ["model.backbone = 'resnet'", "allowed: mlp"]),
])
def test_a_backbone_on_the_wrong_kind_of_data_says_which_fits(backbone, shape, words):
    with pytest.raises(UserError) as caught:
        check_backbone(shipped_params({"model": {"backbone": backbone}}).model, shape)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_the_mlp_standardises_with_the_training_split_only_and_learns_the_table(tmp_path):
    from classweights.model import load_model, predict_proba, save_model, train_model

    table, wine = wine_table()
    table.to_csv(tmp_path / "wine.csv", index=False)
    arrays, names, _ = load_csv(tmp_path / "wine.csv", "cultivar")
    params = shipped_params({"imbalance": {"profile": "none"}, "model": {"backbone": "mlp", "mlp_hidden": [32, 16]},
                             "train": {"epochs": 30, "batch_size": 16, "dropout": 0.1}})
    splits = {**make_splits({**arrays, "class_names": np.array(names)}, params.imbalance, params.split),
              "class_names": np.array(names)}
    model, _ = train_model(splits, params.train, 0, network=params.model)
    normalization = model.layers[0]
    assert type(normalization).__name__ == "Normalization"
    np.testing.assert_allclose(np.asarray(normalization.mean).ravel(), splits["x_train"].mean(axis=0), rtol=1e-4)
    assert not np.allclose(np.asarray(normalization.mean).ravel(), wine.data.to_numpy().mean(axis=0), rtol=1e-4)
    assert [type(layer).__name__ for layer in model.layers] == ["Normalization", "Dense", "Dropout", "Dense", "Dropout",
                                                                "Dense"]
    save_model(model, tmp_path / "model.keras")  # raw rows in, probabilities out, after a reload too
    proba = predict_proba(load_model(tmp_path / "model.keras"), splits["x_test"])
    assert (proba.argmax(axis=1) == splits["y_test"]).mean() > 0.85  # wine is easy; chance is 0.4


def test_a_csv_runs_end_to_end_under_dvc_repro(subprocesses, tmp_path):
    project = make_project(tmp_path / "project", {
        "data": {"source": "csv", "path": "data/input/cancer.csv", "label_column": "diagnosis"},
        "imbalance": {"profile": "none"}, "model": {"backbone": "mlp", "mlp_hidden": [16]},
        "train": {"seeds": [0], "epochs": 2}})
    cancer_table().to_csv(project / "data/input/cancer.csv", index=False)
    dvc(project, "add", "data/input/cancer.csv")
    commit(project, "data")
    result = dvc(project, "repro")
    assert ran_stages(result) == sorted(["check_params", "fetch", "preprocess", "compute_weights", "frozen_features",
                                         "train_unweighted@0", "train_weighted@0", "evaluate"])
    assert "fetch: csv: 2 classes, 417 training rows and no test half, 30 features each" in result.stdout
    counts = json.loads((project / "data/class_counts.json").read_text())
    assert counts["minority_classes"] == ["malignant"] and counts["test"] == {"benign": 72, "malignant": 12}
    details = json.loads((project / "metrics/details/weighted.json").read_text())
    assert list(details["mean"]["per_class"]) == ["benign", "malignant"]
    assert np.load(project / "models/weighted/seed_0/test_proba.npz")["proba"].shape == (84, 2)
    assert "malignant" in (project / "reports/summary.md").read_text()
    # the train stage on the same data with an image network, or with code that is not there:
    # one line on stderr, exit 2, and the trained model is left as it was
    before = (project / "models/unweighted/seed_0/model.keras").read_bytes()
    for backbone, words in [("cnn", "error: model.backbone = 'cnn': the data are feature vectors (30 features a row)"),
                            ("python:networks.gone:build", "error: model.backbone = 'python:networks.gone:build': "
                                                           "no module networks.gone")]:
        set_params(project, {"model": {"backbone": backbone}})
        failed = run(project, sys.executable, "-m", "stages.train", "--arm", "unweighted", "--seed", "0", check=False)
        assert failed.returncode == 2 and failed.stderr.strip().splitlines() == [failed.stderr.strip()], failed.stderr
        assert failed.stderr.startswith(words), failed.stderr
    assert (project / "models/unweighted/seed_0/model.keras").read_bytes() == before
    assert sorted(p.name for p in (project / "models/unweighted").iterdir()) == [".gitignore", "seed_0"]
    # a map over the model: each width trains both arms (the unweighted arm reads model.*)
    set_params(project, {"model": {"backbone": "mlp"}})
    link_venv(project)
    (project / "width.yaml").write_text("grid:\n  model.mlp_hidden: [[4], [16, 8]]\n")
    swept = run(project, "make", "-s", "-o", ".venv/.installed-requirements", "sweep", "SWEEP=width.yaml", "JOBS=1")
    assert swept.stdout.count(": 2 trained, 0 restored from the run cache") == 2, swept.stdout
    with open(project / "sweep/sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model.mlp_hidden"] for row in rows] == ["[4]", "[16, 8]"]
    assert all(0 < float(row["weighted.mean.balanced_accuracy"]) <= 1 for row in rows)
