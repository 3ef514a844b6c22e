"""What ``ema`` and ``swa`` share: an average of the trained model's weights (torch's
``AveragedModel``) that the run is evaluated with in place of the trained weights.

Evaluated (the ``eval_weights`` hook, which the solo loop asks wherever it measures): every
epoch's train and val metrics, the test metrics, the weight statistics and model.pt are the
average's; the training itself never sees it. The average is made at the first optimizer step,
from the model as it trains (every build hook applied, placed on the device).

The average travels inside the trained model's ``state_dict`` (under ``<name>_average.``), so
that early stopping, which snapshots ``model.state_dict()`` at its best epoch and loads it back
at the end, brings back that epoch's average with the weights: a restored run is tested and
saved with the average its monitored (val) metric was measured with. A mid-run checkpoint
pickles the whole trainer, the average with it.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

from torch import nn
from torch.optim.swa_utils import AveragedModel

from regbench.regularizers.base import REGULARIZERS, Regularizer


class WeightAverage(Regularizer):
    """A regularizer whose run is evaluated with an average of its weights (not registered:
    the base of ema and swa)."""

    exclusive = "averaging"     # one set of weights is evaluated: one average per recipe
    solo_because = ("its run is evaluated with an average of the weights (eval_weights), which "
                    "the fused loop does not keep")

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.average: Optional[AveragedModel] = None

    def averaged_model(self, model: nn.Module) -> AveragedModel:
        """A new average of ``model``'s weights, nothing taken in yet."""
        raise NotImplementedError

    def started(self, model: nn.Module) -> AveragedModel:
        """The average, made on first use (the first step) from ``model``, which then carries
        it in its state_dict."""
        if self.average is None:
            self.average = self.averaged_model(model)
            # (partial: torch marks the hook with an attribute, which a bound method refuses)
            model.register_state_dict_post_hook(partial(WeightAverage._save_average, self))
            model.register_load_state_dict_pre_hook(partial(WeightAverage._load_average, self))
        return self.average

    def eval_weights(self, model, x_train):
        if self.average is None or not self.average.n_averaged:
            return None         # nothing averaged yet: the trained weights
        return self.average.module

    @property
    def state_prefix(self) -> str:
        """Where the average's entries sit in the trained model's state_dict."""
        return f"{self.name}_average."

    def _save_average(self, module, state, prefix, metadata) -> None:
        for key, value in self.average.state_dict().items():
            state[f"{prefix}{self.state_prefix}{key}"] = value

    def _load_average(self, module, state, prefix, *rest) -> None:
        start = prefix + self.state_prefix
        own = {key[len(start):]: state.pop(key) for key in list(state) if key.startswith(start)}
        if own:                 # (a plain state, e.g. another run's model.pt, leaves it be)
            self.average.load_state_dict(own)

    @classmethod
    def check(cls, params, ctx):
        names = list(ctx.recipe)
        later = [name for name in names[names.index(cls.name) + 1:]
                 if REGULARIZERS.get(name).overrides("after_step")]
        if later:
            return [f"{cls.name} takes in each step's weights before {' and '.join(later)} "
                    f"change{'s' if len(later) == 1 else ''} them after that step (the "
                    f"after_step hooks run in recipe order); list {cls.name} after "
                    f"{later[-1]}"]
        return []
