"""The learning rate of each epoch (train.lr_schedule): a plain function of the train params and the
epoch, so the rate of an epoch is the same however the training is split into fits (deferred weights
restart the fit at their epoch). No TensorFlow here: classweights.model applies it per epoch."""
import math


def learning_rate_at(train, epoch):
    """The rate of epoch `epoch` (1-based, as weights.defer_epoch and train.lr_step_epochs count).

    Warm-up (train.lr_warmup_epochs = w > 0): epochs 1..w at learning_rate · epoch / w, Cao et al.
    2019's linear warm-up. Then by train.lr_schedule:
    constant: learning_rate;
    step: learning_rate · lr_step_factor^k, k the number of train.lr_step_epochs ≤ epoch (Cao et al.:
    × 0.01 from epoch 161 and again from epoch 181 of 200);
    cosine: learning_rate · (1 + cos(π · (epoch − 1 − w) / (epochs − w))) / 2, from learning_rate in the
    first epoch after the warm-up down towards 0 at the end of the last (Loshchilov & Hutter 2017,
    without restarts).
    """
    base, warmup = train.learning_rate, train.lr_warmup_epochs
    if epoch <= warmup:
        return base * epoch / warmup
    if train.lr_schedule == "step":
        return base * train.lr_step_factor ** sum(1 for drop in train.lr_step_epochs if drop <= epoch)
    if train.lr_schedule == "cosine":
        return base * (1 + math.cos(math.pi * (epoch - 1 - warmup) / (train.epochs - warmup))) / 2
    return base


def is_scheduled(train):
    """Whether the rate changes from epoch to epoch (else the optimizer keeps learning_rate throughout)."""
    return train.lr_schedule != "constant" or train.lr_warmup_epochs > 0
