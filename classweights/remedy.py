"""The remedy arm in words: its loss, its class weights, how and from which epoch they apply."""

APPLIED = {"loss": "applied to the loss", "sampling": "applied by class-balanced sampling"}


def weights_name(weights):
    """The weighting strategy, with its beta where it has one."""
    return f"{weights.strategy} (β = {weights.beta:g})" if weights.strategy == "effective_number" else weights.strategy


def loss_name(loss):
    """The loss with its own parameters: 'focal loss (γ = 1)'."""
    return {"cross_entropy": "cross-entropy",
            "focal": f"focal loss (γ = {loss.focal_gamma:g})",
            "ldam": f"LDAM (max margin {loss.ldam_max_margin:g}, s = {loss.ldam_scale:g})",
            "logit_adjusted": f"logit-adjusted loss (τ = {loss.la_tau:g})"}[loss.name]


def is_plain_weighting(weights, loss):
    """Today's weighted arm: cross-entropy with the weights from the first epoch."""
    return loss.name == "cross_entropy" and weights.defer_epoch == 1


def weights_phrase(weights):
    """'balanced class weights applied to the loss, from epoch 8'; 'no class weights' for none."""
    if weights.apply == "none":
        return "no class weights"
    deferred = f", from epoch {weights.defer_epoch}" if weights.defer_epoch > 1 else ""
    return f"{weights_name(weights)} class weights {APPLIED[weights.apply]}{deferred}"


def describe_remedy(weights, loss):
    """The remedy arm in one phrase: 'focal loss (γ = 1) + effective_number (β = 0.999) class
    weights applied to the loss, from epoch 8'."""
    if weights.apply == "none":
        return loss_name(loss)
    return f"{loss_name(loss)} + {weights_phrase(weights)}"


def remedy_label(weights, loss):
    """The remedy arm's name in tables and legends: 'weighted (loss)' for today's weighted arm,
    else the loss and the weights in short: 'focal γ=1 + effective_number weights (loss), deferred from epoch 8'."""
    if is_plain_weighting(weights, loss):
        return f"weighted ({weights.apply})"
    short = {"cross_entropy": "cross-entropy", "focal": f"focal γ={loss.focal_gamma:g}",
             "ldam": f"LDAM m={loss.ldam_max_margin:g} s={loss.ldam_scale:g}",
             "logit_adjusted": f"logit-adjusted loss τ={loss.la_tau:g}"}[loss.name]
    if weights.apply == "none":
        return short
    deferred = f", deferred from epoch {weights.defer_epoch}" if weights.defer_epoch > 1 else ""
    return f"{short} + {weights.strategy} weights ({weights.apply}){deferred}"
