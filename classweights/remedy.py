"""The remedy as one value, built once from the params: its loss, its class weights, how and from
which epoch they apply; its name in tables, its phrase in the report, the head its network needs
and its Keras loss. LOSSES is the one place that says what each loss.name means."""
from dataclasses import dataclass
from typing import Callable

from classweights.params import LossParams

APPLIED = {"loss": "applied to the loss", "sampling": "applied by class-balanced sampling"}
CROSS_ENTROPY = "cross_entropy"

# The output a loss trains on: Keras' own softmax (the network as build_model builds it), a Dense
# giving logits, or LDAM's cosine layer (its probabilities: the softmax of scale · cosine).
SOFTMAX, LOGITS, COSINE = "softmax", "logits", "cosine"


@dataclass(frozen=True)
class Head:
    """The network's last layer for a loss (classweights.model.remedy_networks builds it)."""
    kind: str  # SOFTMAX, LOGITS or COSINE
    scale: float | None = None  # COSINE: the cosines' scale before the softmax


@dataclass(frozen=True)
class _Loss:
    """What one loss.name means; each function takes the loss params section and reads only its own keys."""
    phrase: Callable[[LossParams], str]  # for the report: 'focal loss (γ = 1)'
    short: Callable[[LossParams], str]  # for tables and legends: 'focal γ=1'
    head: Callable[[LossParams], Head]
    keras: str | None  # its builder (loss, counts) in classweights.losses; None: Keras' own cross-entropy


LOSSES = {
    CROSS_ENTROPY: _Loss(lambda loss: "cross-entropy", lambda loss: "cross-entropy", lambda loss: Head(SOFTMAX),
                         None),
    "focal": _Loss(lambda loss: f"focal loss (γ = {loss.focal_gamma:g})", lambda loss: f"focal γ={loss.focal_gamma:g}",
                   lambda loss: Head(LOGITS), "make_focal_loss"),
    "ldam": _Loss(lambda loss: f"LDAM (max margin {loss.ldam_max_margin:g}, s = {loss.ldam_scale:g})",
                  lambda loss: f"LDAM m={loss.ldam_max_margin:g} s={loss.ldam_scale:g}",
                  lambda loss: Head(COSINE, loss.ldam_scale), "make_ldam_loss"),
    "logit_adjusted": _Loss(lambda loss: f"logit-adjusted loss (τ = {loss.la_tau:g})",
                            lambda loss: f"logit-adjusted loss τ={loss.la_tau:g}", lambda loss: Head(LOGITS),
                            "make_logit_adjusted_loss"),
}


@dataclass(frozen=True)
class Remedy:
    """An arm's remedy. loss: the loss params section (None: cross-entropy, which reads none of its
    keys); strategy and beta: how the class weights were computed (weights params); apply: loss,
    sampling or none; defer_epoch: the first epoch (1-based) that uses the weights, a number
    (parse_params has resolved 'decay'). The defaults are the unweighted arm's: cross-entropy,
    no weights."""
    loss: LossParams | None = None
    strategy: str | None = None
    beta: float | None = None
    apply: str = "none"
    defer_epoch: int = 1

    @classmethod
    def of(cls, params):
        """The remedy (weighted) arm of validated params."""
        weights = params.weights
        return cls(params.loss, weights.strategy, weights.beta, weights.apply, weights.defer_epoch)

    @classmethod
    def unweighted(cls):
        """The unweighted arm: cross-entropy, no weights."""
        return cls()

    @property
    def loss_name(self):
        """loss.name; cross_entropy for the unweighted arm."""
        return self.loss.name if self.loss is not None else CROSS_ENTROPY

    @property
    def _loss(self):
        return LOSSES[self.loss_name]

    @property
    def weighted(self):
        """Whether the training uses class weights at all (on the loss or by sampling)."""
        return self.apply != "none"

    @property
    def plain_fit(self):
        """Whether the arm trains in one ordinary Keras fit: cross-entropy with the weights (if any)
        from the first epoch, as the unweighted arm and the shipped weighted arm do; another loss or
        deferred weights take the remedy path (model.train_remedy)."""
        return self.loss_name == CROSS_ENTROPY and self.defer_epoch == 1

    @property
    def head(self):
        """The head the loss trains on (Head)."""
        return self._loss.head(self.loss)

    def keras_loss(self, counts):
        """The Keras loss (y_true, head output) -> per-image loss, given the training images per
        class; None for cross-entropy, which keeps Keras' own loss on the softmax."""
        if self._loss.keras is None:
            return None
        from classweights import losses  # imports Keras: only a training asks

        return getattr(losses, self._loss.keras)(self.loss, counts)

    @property
    def loss_phrase(self):
        """The loss with its own parameters: 'focal loss (γ = 1)'."""
        return self._loss.phrase(self.loss)

    @property
    def weights_phrase(self):
        """'balanced class weights applied to the loss, from epoch 8'; 'no class weights' for none."""
        if not self.weighted:
            return "no class weights"
        name = f"{self.strategy} (β = {self.beta:g})" if self.strategy == "effective_number" else self.strategy
        deferred = f", from epoch {self.defer_epoch}" if self.defer_epoch > 1 else ""
        return f"{name} class weights {APPLIED[self.apply]}{deferred}"

    @property
    def phrase(self):
        """The remedy in one phrase: 'focal loss (γ = 1) + effective_number (β = 0.999) class
        weights applied to the loss, from epoch 8'."""
        return f"{self.loss_phrase} + {self.weights_phrase}" if self.weighted else self.loss_phrase

    @property
    def label(self):
        """The remedy's name in tables and legends: 'weighted (loss)' for the shipped weighted arm, else
        the loss and the weights in short: 'focal γ=1 + effective_number weights (loss), deferred from
        epoch 8'; 'unweighted' for the unweighted arm."""
        if self.plain_fit:
            return f"weighted ({self.apply})" if self.weighted else "unweighted"
        short = self._loss.short(self.loss)
        if not self.weighted:
            return short
        deferred = f", deferred from epoch {self.defer_epoch}" if self.defer_epoch > 1 else ""
        return f"{short} + {self.strategy} weights ({self.apply}){deferred}"
