"""The papers' training regime: SGD with momentum and coupled weight decay (PyTorch's, as Cao et al.
2019 train), a per-epoch learning-rate schedule, and deferred weights switched on at the rate's
drop. The rates by hand, the SGD steps by hand, and real tiny trainings across the deferral."""
import keras
import numpy as np
import pytest
import yaml

from classweights.errors import UserError
from classweights.files import read_json
from classweights.model import CoupledSGD, scheduled_callbacks, train_model
from classweights.params import parse_params
from classweights.remedy import Remedy
from classweights.schedule import learning_rate_at
from orchestration import sweep
from tests.callbacks import FirstWeights, Snapshots, Started, same
from tests.test_backbones import image_splits
from tools.sandbox import ROOT, committed_params, shipped_params

WEIGHTS = {c: (5.0 if c >= 5 else 0.2) for c in range(10)}
# Cao et al. 2019's CIFAR schedule (kaidic/LDAM-DRW, cifar_train.py): base 0.1, a linear warm-up over
# 5 epochs, × 0.01 from epoch 161 and again from epoch 181 of 200; DRW from epoch 161
CAO = {"epochs": 200, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 2e-4, "learning_rate": 0.1,
       "lr_schedule": "step", "lr_step_epochs": [161, 181], "lr_step_factor": 0.01, "lr_warmup_epochs": 5}


def rates(**train):
    params = shipped_params({"train": train})
    return [learning_rate_at(params.train, epoch) for epoch in range(1, params.train.epochs + 1)]


def test_the_rate_of_every_epoch_by_hand():
    assert rates(epochs=3, learning_rate=0.5) == [0.5, 0.5, 0.5]
    assert rates(epochs=6, learning_rate=1.0, lr_schedule="step", lr_step_epochs=[3, 5], lr_step_factor=0.5) == \
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert rates(epochs=4, learning_rate=1.0, lr_schedule="step", lr_step_epochs=[4], lr_step_factor=0.1,
                 lr_warmup_epochs=2) == [0.5, 1.0, 1.0, 0.1]
    # cosine over 4 epochs: (1 + cos(π·k/4)) / 2 for k = 0..3, towards 0 at the end of epoch 4
    assert rates(epochs=4, learning_rate=1.0, lr_schedule="cosine") == \
        pytest.approx([1.0, 0.8535533905932737, 0.5, 0.14644660940672624], abs=1e-15)
    assert rates(epochs=5, learning_rate=2.0, lr_schedule="cosine", lr_warmup_epochs=1) == \
        pytest.approx([2.0, 2.0, 1.7071067811865475, 1.0, 0.2928932188134524], abs=1e-15)
    # Cao et al.'s adjust_learning_rate, 0-based e there: e + 1 <= 5: 0.1·(e + 1)/5; e + 1 > 180: 0.1·1e-4;
    # e + 1 > 160: 0.1·0.01; else 0.1
    cao = rates(**CAO)
    assert cao[:6] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.1])
    assert (cao[159], cao[160], cao[179], cao[180], cao[199]) == pytest.approx((0.1, 1e-3, 1e-3, 1e-5, 1e-5))


def test_the_default_is_a_constant_rate_and_adds_no_callback():
    # the default training is the one from before schedules existed, byte for byte
    train = shipped_params().train
    assert (train.optimizer, train.lr_schedule, train.lr_warmup_epochs) == ("rmsprop", "constant", 0)
    assert scheduled_callbacks(train, []) == []


def test_cao_s_regime_passes_and_drw_at_the_decay_is_the_first_step_epoch():
    params = shipped_params({"train": CAO, "weights": {"strategy": "effective_number", "beta": 0.9999,
                                                       "defer_epoch": "decay"}, "loss": {"name": "ldam"}})
    assert params.weights.defer_epoch == 161


BAD = [
    ({"train": {"optimizer": "sgd", "momentum": -0.1}}, ["train.momentum = -0.1", "greater than or equal to 0"]),
    ({"train": {"optimizer": "sgd", "momentum": 1.0}}, ["train.momentum = 1.0", "less than 1"]),
    ({"train": {"momentum": 0.9}}, ["train.momentum = 0.9: only train.optimizer sgd uses it (here rmsprop)"]),
    ({"train": {"optimizer": "adam", "weight_decay": 2e-4}}, ["train.weight_decay = 0.0002: only train.optimizer sgd"]),
    ({"train": {"optimizer": "sgd", "weight_decay": -1e-4}}, ["train.weight_decay = -0.0001", "greater than or equal"]),
    ({"train": {"lr_schedule": "exponential"}}, ["train.lr_schedule = 'exponential'", "'constant', 'step' or 'cosine'"]),
    ({"train": {"lr_schedule": "step", "lr_step_epochs": [12]}}, ["train.lr_step_epochs = [12]", "2..train.epochs (10)"]),
    ({"train": {"lr_schedule": "step", "lr_step_epochs": []}}, ["train.lr_step_epochs = []", "at least one epoch"]),
    ({"train": {"lr_schedule": "step", "lr_step_epochs": [8, 4]}}, ["train.lr_step_epochs = [8, 4]", "increasing"]),
    ({"train": {"lr_schedule": "step", "lr_step_epochs": [1]}}, ["train.lr_step_epochs = [1]", "each in 2..train"]),
    ({"train": {"lr_schedule": "step", "lr_step_epochs": [3], "lr_warmup_epochs": 3}},
     ["train.lr_step_epochs = [3]", "each in 4..train.epochs (10) (after the warm-up)"]),
    ({"train": {"lr_step_factor": 1}}, ["train.lr_step_factor = 1", "less than 1"]),
    ({"train": {"lr_step_factor": 0}}, ["train.lr_step_factor = 0", "greater than 0"]),
    ({"train": {"lr_schedule": "cosine", "lr_warmup_epochs": 10}},
     ["train.lr_warmup_epochs = 10: must be below train.epochs (10)"]),
    ({"train": {"lr_warmup_epochs": -1}}, ["train.lr_warmup_epochs = -1", "greater than or equal to 0"]),
    ({"weights": {"defer_epoch": "decay"}}, ["weights.defer_epoch = 'decay': needs train.lr_schedule step",
                                             "here constant"]),
    ({"weights": {"defer_epoch": "later"}}, ["weights.defer_epoch = 'later'", "integer", "'decay'"]),
    ({"weights": {"defer_epoch": True}}, ["weights.defer_epoch = True", "integer"]),
    ({"train": {"lr_schedule": "step", "lr_step_epochs": [11], "epochs": 12}, "weights": {"defer_epoch": "decay"}},
     []),  # valid: DRW at epoch 11 of 12
]


@pytest.mark.parametrize("raw, words", BAD, ids=[str(raw)[:70] for raw, _ in BAD])
def test_bad_regime_params_give_one_line_naming_the_key_and_what_is_allowed(raw, words):
    if not words:
        assert shipped_params(raw).weights.defer_epoch == 11
        return
    with pytest.raises(UserError) as error:
        shipped_params(raw)
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message


def sgd_steps(optimizer, rates_):
    """A one-weight-vector linear model y = w·x trained with mean squared error, one step per rate."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        1, use_bias=False, kernel_initializer=keras.initializers.Constant([[1.0], [-2.0]]))])
    model.compile(optimizer=optimizer, loss="mse")
    for rate in rates_:
        optimizer.learning_rate = rate
        model.train_on_batch(np.array([[1.0, 2.0]]), np.array([[0.5]]))
    return model.get_weights()[0][:, 0]


def test_sgd_takes_pytorch_s_steps_with_coupled_weight_decay():
    # torch.optim.SGD's documented update, written out: g = ∇ + λ·w; b = μ·b + g (b = g at the first
    # step); w = w − rate·b. ∇ of (w·x − y)² is 2·(w·x − y)·x.
    x, y, decay, momentum, step_rates = np.array([1.0, 2.0]), 0.5, 0.01, 0.9, [0.1, 0.05]
    w, buffer = np.array([1.0, -2.0]), np.zeros(2)
    for rate in step_rates:
        gradient = 2 * (w @ x - y) * x + decay * w
        buffer = momentum * buffer + gradient
        w = w - rate * buffer
    # w by hand: step 1 g = (-6.99, -14.02), w = (1.699, -0.598); step 2 b = (-6.26801, -12.61198)
    assert w == pytest.approx([2.0124005, 0.032599])
    ours = sgd_steps(CoupledSGD(momentum=momentum, coupled_weight_decay=decay), step_rates)
    assert ours == pytest.approx(w, rel=1e-6)
    # Keras' own SGD with its (decoupled) weight_decay takes other steps: the test tells them apart
    theirs = sgd_steps(keras.optimizers.SGD(momentum=momentum, weight_decay=decay), step_rates)
    assert np.abs(theirs - w).max() > 1e-3


# tiny SGD training params with momentum, coupled decay and a step drop at epoch 2 of 3
SGD = {"epochs": 3, "batch_size": 16, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 2e-4, "learning_rate": 0.05,
       "lr_schedule": "step", "lr_step_epochs": [2], "lr_step_factor": 0.1}


def sgd_params():
    return shipped_params({"train": SGD, "weights": {"defer_epoch": "decay"}})


@pytest.fixture(scope="module")
def unweighted_sgd():
    params = sgd_params()
    snapshots = Snapshots()
    model, history = train_model(image_splits(), params.train, 0, callbacks=[snapshots])
    return snapshots.after_epoch, history


def test_drw_at_the_decay_switches_at_the_drop_with_the_same_rates_and_optimizer_state(unweighted_sgd):
    params = sgd_params()
    assert params.weights.defer_epoch == 2
    unweighted, unweighted_history = unweighted_sgd
    expected = [0.05, 0.005, 0.005]  # float32 variables: as the optimizer holds them
    assert unweighted_history["learning_rate"] == pytest.approx(expected, rel=1e-7)
    splits = image_splits()
    snapshots = Snapshots()
    drw = Remedy.of(params)  # cross-entropy, the weights on the loss from the drop on
    _, history = train_model(splits, params.train, 0, WEIGHTS, drw, callbacks=[snapshots])
    # the fit restarts at epoch 2 (initial_epoch): each epoch keeps its rate by its own number
    assert history["learning_rate"] == unweighted_history["learning_rate"]
    assert same(snapshots.after_epoch[0], unweighted[0])  # epoch 1: the unweighted arm's, to the bit
    assert not np.array_equal(snapshots.after_epoch[1][0], unweighted[1][0])  # epoch 2: weighted
    # weights of 1 from the drop on are the unweighted arm itself, to the bit: the momentum buffers,
    # the iteration count and the rates carry across the restart (a fresh optimizer, or the epochs
    # counted from the restart, would give other weights)
    ones = {c: 1.0 for c in range(10)}
    carried = Snapshots()
    train_model(splits, params.train, 0, ones, drw, callbacks=[carried])
    assert all(same(ours, theirs) for ours, theirs in zip(carried.after_epoch, unweighted, strict=True))


@pytest.mark.parametrize("arm, loss, apply", [("weighted", "cross_entropy", "loss"), ("ldam", "ldam", "loss"),
                                               ("logit_adjusted", "logit_adjusted", "none")])
def test_under_sgd_every_arm_of_a_seed_starts_from_the_same_weights(arm, loss, apply):
    # (the same batches: the weighted arm with weights of 1 is the unweighted arm to the bit, above)
    params = shipped_params({"train": {**SGD, "epochs": 2}, "loss": {"name": loss}, "weights": {"apply": apply},
                             "model": {"backbone": "resnet", "resnet_depth": 8}})
    splits = image_splits()
    starts = []
    remedy = Remedy.of(params)
    for weights, arm_remedy in ((None, Remedy.unweighted()), (WEIGHTS if remedy.weighted else None, remedy)):
        first = FirstWeights(stop=True)  # compiled with SGD, its variables built: no step is needed
        with pytest.raises(Started):
            train_model(splits, params.train, 0, weights, arm_remedy, callbacks=[first], network=params.model)
        starts.append(first.layers)
    unweighted, other = starts
    for position, (ours, theirs) in enumerate(zip(unweighted, other, strict=True)):
        if arm == "ldam" and position == len(unweighted) - 1:
            ours = ours[:1]  # LDAM's cosine head takes the softmax head's kernel, no bias
        assert len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs)), (arm, position)
    assert any(w.size for layer in unweighted for w in layer)


def test_the_papers_sweep_file_is_valid_shares_one_unweighted_arm_and_switches_at_the_drop(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed_params()))
    fixed, points = sweep.read_sweep(ROOT / "sweep-papers.yaml", tmp_path / "params.yaml")
    assert (fixed["train.optimizer"], fixed["train.lr_schedule"], fixed["model.backbone"]) == ("sgd", "step", "resnet")
    assert len(points) == 5 and len({sweep.unweighted_group(p) for p in points}) == 1
    deferred = [parse_params(sweep.apply_overrides(committed_params(), {**fixed, **point}))
                for point in points if point.get("weights.defer_epoch") == "decay"]
    assert [params.weights.defer_epoch for params in deferred] == [25, 25]  # the first drop


def test_a_model_trained_with_sgd_saves_and_loads_in_safe_mode_with_its_optimizer_and_rates(tmp_path):
    from classweights.model import load_model, predict_proba, train_arm

    splits = {**image_splits(), "x_test": image_splits()["x_val"]}
    train_arm(splits, shipped_params({"train": SGD}).train, 0, tmp_path / "model", label="sgd")
    model = load_model(tmp_path / "model" / "model.keras")
    assert type(model.optimizer).__name__ == "CoupledSGD"
    assert (model.optimizer.get_config()["coupled_weight_decay"], model.optimizer.momentum) == (2e-4, 0.9)
    np.testing.assert_allclose(predict_proba(model, splits["x_test"]),
                               np.load(tmp_path / "model" / "test_proba.npz")["proba"], atol=1e-6)
    history = read_json(tmp_path / "model" / "history.json")
    assert history["learning_rate"] == pytest.approx([0.05, 0.005, 0.005], rel=1e-7)
