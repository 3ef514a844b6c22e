"""Spectral normalisation: every linear/conv weight divided by its largest singular value.

Paper: Miyato, Kataoka, Koyama & Yoshida 2018, "Spectral Normalization for Generative
Adversarial Networks".
Hook: build (wrap: ``torch.nn.utils.parametrizations.spectral_norm`` on every linear and conv
layer's weight, the output layer's included).
Formula: the layer computes with W̄ = W/σ̂(W), where σ̂(W) = uᵀ·W_mat·v estimates the largest
singular value of W_mat (W itself for a linear layer [out, in]; a conv kernel reshaped to
[out, in·kh·kw]) by power iteration: each training forward runs ``n_power_iterations`` steps
v ← W_matᵀu/‖W_matᵀu‖, u ← W_mat·v/‖W_mat·v‖ from the previous u (persistent across steps,
started from 15 steps at build); eval forwards reuse the last u, v. The optimizer updates W;
the gradient flows through σ̂. Weight penalties, max-norm and the weight statistics act on W
(the parameter ``….parametrizations.weight.original``).
Deviations from the paper: the paper normalises a GAN's discriminator; here any classifier or
regressor, as a Lipschitz constraint (Yoshida & Miyato 2017 study it as a regularizer). A conv
kernel is normalised as the reshaped matrix, as the paper does, which bounds but is not the
conv operator's own spectral norm.
"""
from __future__ import annotations

from pydantic import Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from regbench.config.schema import StrictModel
from regbench.errors import RegbenchError
from regbench.models.base import weight_layers
from regbench.regularizers.base import Regularizer, register


class Params(StrictModel):
    n_power_iterations: int = Field(1, ge=1, le=100)  # power-iteration steps per training forward (the paper: 1)


def normalise_weights(model: nn.Module, n_power_iterations: int = 1) -> list[str]:
    """Spectral normalisation on the weight of every linear/conv layer of ``model`` that holds
    one as a parameter (in place). Returns the layers' names."""
    names = []
    for name, layer in weight_layers(model):
        weight = getattr(layer, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.dim() < 2:
            continue
        spectral_norm(layer, n_power_iterations=n_power_iterations)
        # torch gives each parametrized module a class of its own whose __getstate__ refuses
        # pickling, since plain pickle cannot find that class by name; a checkpoint pickles
        # the trainer with cloudpickle, which stores the class itself, so the guard goes
        del type(layer).__getstate__
        names.append(name)
    return names


@register
class SpectralNorm(Regularizer):
    name = "spectral_norm"
    summary = ("divide every linear/conv weight by its largest singular value (power "
               "iteration), so each layer is 1-Lipschitz")
    paper = "Miyato et al. 2018"
    Params = Params
    solo_because = ("torch's parametrizations (W/σ(W) computed in each forward) have no "
                    "stacked form for the fused loop")

    @classmethod
    def conflicts_with(cls, other):
        if other.name in ("l2", "weight_decay"):
            return (f"{other.name} shrinks W by a factor, which W/σ(W) divides out: the "
                    "normalised weights the model computes with do not feel it (it changes "
                    "only the effective step size)")
        return None

    def wrap(self, model):
        names = normalise_weights(model, self.params.n_power_iterations)
        if not names:
            raise RegbenchError("spectral_norm cannot apply to this model: it has no linear or "
                                "conv layer whose weight is a trainable parameter")
        self.ctx.changes.append(f"spectral_norm: {len(names)} weights normalised by their "
                                "largest singular value")
        return model
