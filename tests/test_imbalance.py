import numpy as np
import pytest

from classweights.errors import UserError
from classweights.imbalance import make_splits, minority_classes, stratified_split, subsample, target_counts
from tools.sandbox import shipped_params


def imbalance(**kwargs):
    return shipped_params({"imbalance": kwargs}).imbalance


def test_step_profile_cuts_minority_classes_to_n_max_over_ratio():
    counts = target_counts([400] * 10, imbalance(profile="step", ratio=10, minority_classes=[1, 3]))
    assert counts.tolist() == [400, 40, 400, 40, 400, 400, 400, 400, 400, 400]


def test_step_n_max_defaults_to_the_smallest_class_and_can_be_set():
    available = [500, 450, 600, 700, 480, 500, 500, 500, 500, 500]
    assert target_counts(available, imbalance(profile="step", ratio=5, minority_classes=[0])).tolist() == \
        [90] + [450] * 9
    assert target_counts(available, imbalance(profile="step", ratio=4, minority_classes=[9], n_max=100)).tolist() == \
        [100] * 9 + [25]


def test_longtail_follows_the_exponential_profile_in_the_given_order():
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    counts = target_counts([1000] * 10, imbalance(profile="longtail", ratio=100, class_order=order))
    expected = [round(1000 * 100 ** (-i / 9)) for i in range(10)]
    assert counts[order].tolist() == expected
    assert counts[9] == 1000 and counts[0] == 10


def test_none_keeps_everything_unless_capped():
    available = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert target_counts(available, imbalance(profile="none")).tolist() == available
    assert target_counts(available, imbalance(profile="none", n_max=8)).tolist() == [5, 6, 7, 8, 8, 8, 8, 8, 8, 8]


def test_a_profile_that_empties_a_class_is_an_error_naming_the_ratio():
    with pytest.raises(UserError) as raised:
        target_counts([400] * 10, imbalance(profile="step", ratio=1000, minority_classes=[0]))
    assert str(raised.value) == ("imbalance.ratio = 1000.0: leaves class 0 with 0 training image(s) from n_max = 400; "
                                 "allowed: ratio at most 200 (each class needs 2, one for validation)")


def test_a_longtail_that_leaves_one_image_names_the_class_and_count():
    # the last class of class_order keeps 1000 * 1000^(-9/9) = 1 image
    with pytest.raises(UserError, match=r"leaves class 9 with 1 training image\(s\) from n_max = 1000; "
                                        r"allowed: ratio at most 500 "):
        target_counts([1000] * 10, imbalance(profile="longtail", ratio=1000))


def test_two_images_of_a_class_are_enough():
    counts = target_counts([400] * 10, imbalance(profile="step", ratio=10, minority_classes=[3], n_max=20))
    assert counts.tolist() == [20, 20, 20, 2, 20, 20, 20, 20, 20, 20]


def test_n_max_above_what_a_class_has_is_an_error():
    with pytest.raises(UserError, match=r"imbalance.n_max = 500: class 5 has only 300 .* at most 300"):
        target_counts([400] * 5 + [300] + [400] * 4, imbalance(profile="step", n_max=500))


def test_subsample_is_seeded_and_exact():
    labels = np.repeat(np.arange(10), 50)
    wanted = np.arange(1, 11) * 3
    first = subsample(labels, wanted, seed=7)
    assert np.bincount(labels[first]).tolist() == wanted.tolist()
    assert len(np.unique(first)) == len(first)  # drawn without replacement
    assert np.array_equal(first, subsample(labels, wanted, seed=7))
    assert not np.array_equal(first, subsample(labels, wanted, seed=8))


def test_stratified_split_keeps_class_proportions_and_every_class_on_both_sides():
    labels = np.repeat(np.arange(10), [200] * 5 + [20] * 5)
    train, val = stratified_split(labels, 0.1, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [20] * 5 + [2] * 5
    assert np.array_equal(val, stratified_split(labels, 0.1, seed=0)[1])
    assert not np.array_equal(val, stratified_split(labels, 0.1, seed=1)[1])


def test_stratified_split_that_cannot_cover_every_class_is_a_user_error():
    labels = np.repeat(np.arange(10), 2)
    with pytest.raises(UserError, match="split.val_fraction = 0.1: cannot split 20 images into stratified "
                                        "training and validation parts"):
        stratified_split(labels, 0.1, seed=0)


NAMES = [f"c{c}" for c in range(10)]


def raw_arrays(y):
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 255, (len(y), 28, 28), dtype=np.uint8), "y_train": y,
            "x_test": rng.integers(0, 255, (50, 28, 28), dtype=np.uint8), "y_test": y[::20],
            "class_names": np.array([str(c) for c in range(10)])}


def test_make_splits_unbalances_train_only_and_leaves_test_as_shipped():
    y = np.repeat(np.arange(10), 100).astype(np.uint8)
    raw = raw_arrays(y)
    params = shipped_params({"imbalance": {"profile": "step", "ratio": 5}, "split": {"val_fraction": 0.2}})
    splits = make_splits(raw, params.imbalance, params.split)
    combined = np.bincount(np.concatenate([splits["y_train"], splits["y_val"]]))
    assert combined.tolist() == [20] * 5 + [100] * 5
    assert np.bincount(splits["y_val"]).tolist() == [4] * 5 + [20] * 5
    assert splits["x_test"] is raw["x_test"] and splits["y_test"] is raw["y_test"]
    assert splits["x_train"].dtype == np.uint8
    # every kept image is a real training image with its own label, in both parts
    for part in ("train", "val"):
        for image, label in zip(splits[f"x_{part}"][:20], splits[f"y_{part}"][:20]):
            match = np.flatnonzero((raw["x_train"] == image).all(axis=(1, 2)))
            assert raw["y_train"][match[0]] == label


def test_make_splits_is_seeded():
    raw = raw_arrays(np.repeat(np.arange(10), 100).astype(np.uint8))

    def val_images(imbalance_seed, split_seed):
        params = shipped_params({"imbalance": {"profile": "step", "ratio": 5, "seed": imbalance_seed},
                               "split": {"val_fraction": 0.2, "seed": split_seed}})
        return make_splits(raw, params.imbalance, params.split)["x_val"]

    assert np.array_equal(val_images(0, 0), val_images(0, 0))
    assert not np.array_equal(val_images(0, 0), val_images(1, 0))
    assert not np.array_equal(val_images(0, 0), val_images(0, 1))


def test_make_splits_with_a_class_missing_from_training_names_it():
    raw = raw_arrays(np.repeat(np.arange(9), 100).astype(np.uint8))  # no image of class 9
    raw["class_names"] = np.array(NAMES)
    params = shipped_params({"imbalance": {"profile": "step", "ratio": 5, "n_max": 50}})
    with pytest.raises(UserError, match="imbalance.n_max = 50: class c9 has only 0 training images"):
        make_splits(raw, params.imbalance, params.split)


def test_minority_classes_per_profile_are_named():
    counts = [100] * 10
    assert minority_classes(imbalance(profile="step", minority_classes=[7, 2]), counts, NAMES) == (
        ["c2", "c7"], "imbalance.minority_classes, the step profile's")
    assert minority_classes(imbalance(profile="longtail", class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), counts,
                            NAMES) == (["c0", "c1", "c2", "c3", "c4"], "the tail half of imbalance.class_order")
    assert minority_classes(imbalance(profile="none"), counts, NAMES)[0] == []


def test_with_the_data_s_own_counts_a_minority_class_has_at_most_half_the_largest_class_s_images():
    # 50 is exactly half of 100 (minority), 51 is not; the rule is written into the report
    counts = [100, 51, 50, 10, 100, 99, 60, 2, 100, 100]
    names, rule = minority_classes(imbalance(profile="none"), counts, NAMES)
    assert names == ["c2", "c3", "c7"] and "at most 50% of the largest class" in rule


def test_class_counts_lists_every_class_including_empty_ones_by_name():
    from classweights.imbalance import class_counts

    assert class_counts(np.array([2, 2, 0], dtype=np.uint8), ["cat", "dog", "owl"]) == {"cat": 1, "dog": 0, "owl": 2}
    assert class_counts(np.array([0, 0, 1], dtype=np.uint8), ["cat", "dog", "owl"]) == {"cat": 2, "dog": 1, "owl": 0}


def test_data_without_a_test_half_gets_a_stratified_held_out_split_with_its_own_imbalance():
    y = np.repeat(np.arange(3), [200, 60, 20]).astype(np.uint8)
    raw = {**raw_arrays(y), "class_names": np.array(["a", "b", "c"])}
    raw["x_test"], raw["y_test"] = raw["x_train"][:0], raw["y_train"][:0]
    params = shipped_params({"imbalance": {"profile": "none"}, "split": {"test_fraction": 0.2, "val_fraction": 0.1}})
    splits = make_splits(raw, params.imbalance, params.split)
    assert np.bincount(splits["y_test"]).tolist() == [40, 12, 4]  # a fifth of each class (not sklearn's default 1/4)
    assert np.bincount(np.concatenate([splits["y_train"], splits["y_val"]])).tolist() == [160, 48, 16]
    assert np.array_equal(make_splits(raw, params.imbalance, params.split)["x_test"], splits["x_test"])  # seeded
    test_rows = {img.tobytes() for img in splits["x_test"]}
    assert not test_rows & {img.tobytes() for img in np.concatenate([splits["x_train"], splits["x_val"]])}


def test_the_profile_s_class_ids_are_checked_against_the_data_before_splitting():
    raw = {**raw_arrays(np.repeat(np.arange(3), 20).astype(np.uint8)), "class_names": np.array(["a", "b", "c"])}
    params = shipped_params({"imbalance": {"profile": "step", "minority_classes": [0, 4]}})
    with pytest.raises(UserError, match=r"imbalance.minority_classes = \[0, 4\]: the data has classes 0..2"):
        make_splits(raw, params.imbalance, params.split)


def test_a_held_out_test_split_that_cannot_cover_every_class_names_its_own_key():
    y = np.repeat(np.arange(3), [30, 10, 1]).astype(np.uint8)  # one image of c: not in both parts
    raw = {**raw_arrays(y), "class_names": np.array(["a", "b", "c"])}
    raw["x_test"], raw["y_test"] = raw["x_train"][:0], raw["y_train"][:0]
    params = shipped_params({"imbalance": {"profile": "none"}, "split": {"test_fraction": 0.2}})
    with pytest.raises(UserError, match="^split.test_fraction = 0.2: cannot split 41 images into stratified "
                                        "training and test parts"):
        make_splits(raw, params.imbalance, params.split)
