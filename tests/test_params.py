import pytest

from classweights.errors import UserError
from classweights.params import Params, check_class_ids, load_params, parse_params
from tools.sandbox import committed_params, merged


def parse_with(overrides):
    """The committed params.yaml with some keys changed, through the one validation gate."""
    return parse_params(merged(committed_params(), overrides))


def test_the_committed_params_yaml_poses_an_unbalanced_question_offline():
    params = parse_params(committed_params())
    assert params.data.source == "mnist-sample" and params.data.local_copy is None  # no network needed
    assert params.imbalance.profile in ("step", "longtail") and params.imbalance.ratio > 1
    assert len(params.train.seeds) >= 3  # a paired test needs several seeds


def test_every_key_is_required_because_params_yaml_is_the_only_place_defaults_live():
    sections = [field.annotation for field in Params.model_fields.values()]
    assert all(field.is_required() for section in [Params, *sections] for field in section.model_fields.values())
    raw = committed_params()
    del raw["imbalance"]["seed"]
    with pytest.raises(UserError, match=r"missing key 'imbalance.seed'"):
        parse_params(raw)
    with pytest.raises(UserError, match=r"missing key 'evaluate'"):
        parse_params({section: values for section, values in committed_params().items() if section != "evaluate"})


def test_ints_are_accepted_for_floats_but_strings_are_not():
    assert parse_with({"imbalance": {"ratio": 10}}).imbalance.ratio == 10.0
    with pytest.raises(UserError, match=r"imbalance.ratio = '10'"):
        parse_with({"imbalance": {"ratio": "10"}})


# (raw params, words the one-line message must contain)
BAD = [
    ({"dat": {}}, ["unknown key 'dat'", "data, imbalance, split, weights, loss, model, train, evaluate"]),
    ({"weights": {"strategy": "balancd"}}, ["weights.strategy = 'balancd'", "'balanced', 'sqrt_inverse' or 'effective_number'"]),
    ({"weights": {"betta": 0.9}}, ["unknown key 'weights.betta'", "strategy, beta, apply"]),
    ({"weights": {"apply": "sample"}}, ["weights.apply = 'sample'", "'loss', 'sampling' or 'none'"]),
    ({"weights": {"beta": 1.0}}, ["weights.beta = 1.0", "less than 1"]),
    ({"weights": {"beta": -0.1}}, ["weights.beta = -0.1", "greater than or equal to 0"]),
    ({"data": {"source": "mnst"}}, ["data.source = 'mnst'", "'mnist-sample', 'mnist', 'fashion-mnist', 'folder', 'npz' or 'csv'"]),
    ({"data": {"source": "folder", "path": "/home/me/pictures"}}, ["data.path = '/home/me/pictures'", "under data/input/"]),
    ({"data": {"source": "npz", "path": None}}, ["data.path = None", "fetch depends on data.path",
                                                 "data/input/none for mnist-sample", "under data/input/ for folder"]),
    ({"data": {"source": "folder", "path": "data/input/none"}}, ["data.path = 'data/input/none'", "under data/input/"]),
    ({"data": {"source": "folder", "path": "data/input/../../x"}}, ["data.path = 'data/input/../../x'", "under data/input/"]),
    ({"data": {"image_size": [64]}}, ["data.image_size = [64]", "[height, width], each at least 18 pixels"]),
    ({"data": {"image_size": [64, 10]}}, ["data.image_size = [64, 10]", "each at least 18 pixels"]),
    ({"split": {"test_fraction": 1}}, ["split.test_fraction = 1", "less than 1"]),
    ({"data": {"mirror": "ftp://x/"}}, ["data.mirror", "http(s) URL"]),
    ({"data": {"path": 3}}, ["data.path = 3", "valid string"]),
    ({"model": {"resnet_depth": 21}}, ["model.resnet_depth = 21", "6n+2"]),
    ({"model": {"resnet_depth": 2}}, ["model.resnet_depth = 2", "6n+2"]),
    ({"model": {"backbone": "vgg"}}, ["model.backbone = 'vgg'", "cnn, resnet, mlp, keras:NAME"]),
    ({"model": {"backbone": "python:mymodels.net:build"}}, ["model.backbone = 'python:mymodels.net:build'",
                                                            "python:networks.module:function"]),
    ({"model": {"mlp_hidden": [16, 0]}}, ["model.mlp_hidden = [16, 0]", "each >= 1"]),
    ({"model": {"weights": "imagenet"}}, ["model.weights = 'imagenet': only a keras:NAME backbone"]),
    ({"model": {"trainable": "head"}}, ["model.trainable = 'head': only a keras:NAME backbone"]),
    ({"model": {"backbone": "keras:MobileNetV3Small", "weights": "/etc/w.h5"}}, ["model.weights = '/etc/w.h5'",
                                                                                "under networks/"]),
    ({"model": {"backbone": "keras:MobileNetV3Small", "weights": "data/w.h5"}}, ["model.weights = 'data/w.h5'",
                                                                                "under networks/"]),
    ({"data": {"source": "mnist-sample", "test_path": "data/input/t.csv"}}, ["data.test_path", "only data.source csv"]),
    ({"imbalance": {"profile": "steps"}}, ["imbalance.profile = 'steps'", "'none', 'step' or 'longtail'"]),
    ({"imbalance": {"ratio": 0.5}}, ["imbalance.ratio = 0.5", "greater than or equal to 1"]),
    ({"imbalance": {"ratio": "ten"}}, ["imbalance.ratio = 'ten'", "valid number"]),
    ({"imbalance": {"minority_classes": 3}}, ["imbalance.minority_classes = 3", "valid list"]),
    ({"imbalance": {"minority_classes": [2, -1]}}, ["imbalance.minority_classes", "class id -1 is negative"]),
    ({"imbalance": {"minority_classes": [2, 2]}}, ["imbalance.minority_classes", "class id 2 is listed twice"]),
    ({"imbalance": {"minority_classes": []}}, ["imbalance.minority_classes", "at least one class"]),
    ({"imbalance": {"class_order": [0, 1, 1]}}, ["imbalance.class_order", "class id 1 is listed twice"]),
    ({"imbalance": {"n_max": 0}}, ["imbalance.n_max = 0", "greater than or equal to 1"]),
    ({"split": {"val_fraction": 0}}, ["split.val_fraction = 0", "greater than 0"]),
    ({"split": {"val_fraction": 1.5}}, ["split.val_fraction = 1.5", "less than 1"]),
    ({"train": {"seeds": []}}, ["train.seeds = []", "at least one seed"]),
    ({"train": {"seeds": [1, 2, 1]}}, ["train.seeds", "seed 1 is listed twice"]),
    ({"train": {"seeds": 3}}, ["train.seeds = 3", "valid list"]),
    ({"train": {"epochs": 0}}, ["train.epochs = 0", "greater than or equal to 1"]),
    ({"train": {"epochs": 2.5}}, ["train.epochs = 2.5", "valid integer"]),
    ({"train": {"epochs": True}}, ["train.epochs = True", "valid integer"]),
    ({"train": {"batch_size": 0}}, ["train.batch_size = 0", "greater than or equal to 1"]),
    ({"train": {"optimizer": "RMSProp"}}, ["train.optimizer = 'RMSProp'", "'rmsprop', 'adam' or 'sgd'"]),
    ({"train": {"learning_rate": 0}}, ["train.learning_rate = 0", "greater than 0"]),
    ({"train": {"learning_rate": -0.1}}, ["train.learning_rate = -0.1", "greater than 0"]),
    ({"train": {"dropout": 1}}, ["train.dropout = 1", "less than 1"]),
    ({"train": {"precision": "bf16"}}, ["train.precision = 'bf16'", "'float32' or 'mixed_bfloat16'"]),
    ({"train": {"threads": -1}}, ["train.threads = -1", "greater than or equal to 0"]),
    ({"evaluate": {"alpha": 0}}, ["evaluate.alpha = 0", "greater than 0"]),
    ({"evaluate": {"alfa": 0.1}}, ["unknown key 'evaluate.alfa'", "alpha"]),
    ({"data": {"path": "/x"}}, ["data.path = '/x'", "not allowed with data.source mnist-sample"]),
    # the remedy arm: each loss's own keys, the deferral epoch, and combinations the gate refuses
    ({"loss": {"name": "ldam_drw"}}, ["loss.name = 'ldam_drw'", "'cross_entropy', 'focal', 'ldam' or 'logit_adjusted'"]),
    ({"loss": {"focal_gamma": -0.5}}, ["loss.focal_gamma = -0.5", "greater than or equal to 0"]),
    ({"loss": {"la_tau": -1}}, ["loss.la_tau = -1", "greater than or equal to 0"]),
    ({"loss": {"ldam_max_margin": 0}}, ["loss.ldam_max_margin = 0", "greater than 0"]),
    ({"loss": {"ldam_scale": 0.0}}, ["loss.ldam_scale = 0.0", "greater than 0"]),
    ({"loss": {"ldam_scale": float("inf")}}, ["loss.ldam_scale = inf", "finite"]),
    ({"weights": {"defer_epoch": 0}}, ["weights.defer_epoch = 0", "greater than or equal to 1"]),
    ({"weights": {"defer_epoch": 11}}, ["weights.defer_epoch = 11", "1..train.epochs (10)"]),
    ({"weights": {"apply": "none"}}, ["loss.name = 'cross_entropy' with weights.apply none", "the unweighted arm itself"]),
    ({"weights": {"apply": "none"}, "loss": {"name": "focal", "focal_gamma": 0}},
     ["loss.name = 'focal' with weights.apply none", "focal_gamma 0 is cross-entropy", "unweighted arm itself"]),
    ({"weights": {"apply": "none"}, "loss": {"name": "logit_adjusted", "la_tau": 0}},
     ["loss.name = 'logit_adjusted' with weights.apply none", "la_tau 0 is cross-entropy"]),
    ({"weights": {"apply": "none", "defer_epoch": 3}, "loss": {"name": "focal"}},
     ["weights.defer_epoch = 3 with weights.apply none", "no weights to switch on"]),
    ({"weights": {"apply": "sampling"}, "loss": {"name": "logit_adjusted"}},
     ["loss.name = 'logit_adjusted' with weights.apply sampling", "correct for it twice", "weights.apply to none"]),
]


@pytest.mark.parametrize("overrides", [
    {"loss": {"name": "focal"}, "weights": {"apply": "none"}},  # focal alone
    {"loss": {"name": "focal"}, "weights": {"strategy": "effective_number", "beta": 0.9999}},  # CB focal
    {"loss": {"name": "ldam"}, "weights": {"defer_epoch": 8}},  # LDAM-DRW
    {"loss": {"name": "ldam"}, "weights": {"apply": "sampling", "defer_epoch": 8}},  # LDAM-DRS
    {"loss": {"name": "cross_entropy"}, "weights": {"defer_epoch": 10}},  # DRW, the last epoch weighted
    {"loss": {"name": "logit_adjusted"}, "weights": {"apply": "none"}},
])
def test_the_remedies_of_the_literature_pass_the_gate(overrides):
    assert parse_with(overrides).loss.name == overrides["loss"]["name"]


@pytest.mark.parametrize("raw, words", BAD, ids=[str(raw)[:60] for raw, _ in BAD])
def test_bad_params_give_one_line_naming_key_value_and_what_is_allowed(raw, words):
    with pytest.raises(UserError) as caught:
        parse_with(raw)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("raw, words", [
    ({**committed_params(), "train": [1, 2]}, ["train = [1, 2]", "valid dictionary"]),
    ([1, 2], ["must be a mapping"]),
    (None, ["must be a mapping"]),
])
def test_a_file_of_the_wrong_shape_is_one_line(raw, words):
    with pytest.raises(UserError) as caught:
        parse_params(raw)
    assert "\n" not in str(caught.value) and all(word in str(caught.value) for word in words)


def test_load_params_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_params(tmp_path / "params.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  seeds: [0, 1\n")
    with pytest.raises(UserError, match="not valid YAML at line"):
        load_params(broken)
    # the reason is yaml's own words, whatever line it finds it on
    broken.write_text("train:\n  epochs: 3\n  seeds [0, 1]: x: y\n")
    with pytest.raises(UserError) as caught:
        load_params(broken)
    assert str(caught.value) == f"{broken}: not valid YAML at line 3: mapping values are not allowed here"


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("train: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(evil)


def test_the_committed_file_holds_exactly_the_keys_the_models_declare():
    raw = committed_params()
    params = parse_params(raw)
    assert set(raw) == set(Params.model_fields)
    for section, values in raw.items():
        assert set(values) == set(type(getattr(params, section)).model_fields)
    check_class_ids(params.imbalance, 10)  # the shipped ids fit the shipped data's ten classes


# Only the data knows its class count: preprocess checks the profile's ids against it.
@pytest.mark.parametrize("overrides, classes, words", [
    ({"profile": "step", "minority_classes": [2, 10]}, 10, ["imbalance.minority_classes = [2, 10]", "classes 0..9"]),
    ({"profile": "step", "minority_classes": [0, 1, 2]}, 3, ["imbalance.minority_classes", "1 to 2 of those ids",
                                                            "at least one majority class"]),
    ({"profile": "longtail", "class_order": [0, 1, 2]}, 10, ["imbalance.class_order = [0, 1, 2]", "every id 0..9"]),
    ({"profile": "longtail", "class_order": [2, 1, 0, 3]}, 3, ["imbalance.class_order", "every id 0..2 exactly once"]),
])
def test_class_ids_are_checked_against_the_data_s_class_count(overrides, classes, words):
    imbalance = parse_with({"imbalance": overrides}).imbalance
    with pytest.raises(UserError) as caught:
        check_class_ids(imbalance, classes)
    assert "\n" not in str(caught.value) and all(word in str(caught.value) for word in words)


def test_class_ids_of_a_profile_not_in_use_are_not_checked():
    # profile none keeps the data's counts: the shipped ten-class ids do not stop a three-class data set
    check_class_ids(parse_with({"imbalance": {"profile": "none"}}).imbalance, 3)
    check_class_ids(parse_with({"imbalance": {"profile": "step", "minority_classes": [2]}}).imbalance, 3)
