"""Sharpness-aware minimisation: step with the gradient at the worst nearby weights.

Paper: Foret, Kleiner, Mobahi & Neyshabur 2021, "Sharpness-Aware Minimization for Efficiently
Improving Generalization"; ``adaptive``: Kwon, Kim, Park & Choi 2021, "ASAM: Adaptive
Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural Networks".
Hook: perturb (after the step's first backward; the loop then computes the objective and its
gradient again at the moved weights, puts the weights back, and the after_backward hooks and
the optimizer step use that second gradient: two forward-backward passes per step).
Formula: g = ∇L(w) over every trainable parameter, from the first pass (penalties included);
SAM: ε = ρ·g/(‖g‖₂ + 1e-12); ASAM (``adaptive``): ε = ρ·T_w²g/(‖T_w g‖₂ + 1e-12) with T_w =
|w| + η elementwise for the parameters named ``weight`` (linear and conv kernels, norm gains)
and T_w = 1 for the others (biases), as the authors' code (SamsungLabs/ASAM) does. The step
then uses ∇L(w + ε), taken at w + ε with the same batch and fresh dropout masks, and updates
w. ρ is the radius of the neighbourhood searched (L2 norm of ε; of T_w⁻¹ε with ``adaptive``),
in the units of the weights; η (unitless) keeps weights at zero movable. The objective logged
is the first pass's, L(w). The model's buffers (batch-norm running statistics, spectral norm's
power-iteration vectors) are restored after the second pass, so each step updates them once,
from the unperturbed weights.
Deviations from the paper: ε is computed from the whole batch's gradient, not per sub-batch
of m samples (the paper's m-sharpness, m < batch size, is a data-parallel artefact it finds
helps; here m = batch_size). Batch-norm statistics are left untouched by the second pass, as
the reference PyTorch implementations do (davda54/sam's disable_running_stats). ASAM's ρ is
typically about ten times SAM's (0.5 against 0.05 on CIFAR-10 in Kwon et al.), since ε is
measured relative to the weights: set it when ``adaptive`` is true.
"""
from __future__ import annotations

from typing import Callable

import torch
from pydantic import Field
from torch import nn

from regbench.config.schema import StrictModel
from regbench.regularizers.base import Regularizer, register

NORM_FLOOR = 1e-12     # added to ‖g‖ (davda54/sam's constant): a zero gradient moves nothing


class Params(StrictModel):
    rho: float = Field(0.05, gt=0)      # ρ: radius of the neighbourhood, L2 norm of ε
    adaptive: bool = False              # ASAM: the radius relative to each weight's size
    eta: float = Field(0.01, ge=0)      # η: added to |w| in ASAM's T_w (unused otherwise)


@torch.no_grad()
def sam_perturbation(weights: list[torch.Tensor], grads: list[torch.Tensor], rho: float,
                     scales: list[bool], eta: float = 0.01) -> list[torch.Tensor]:
    """ε for each weight: ρ·g/‖g‖ (no ``True`` in ``scales``), or ASAM's ρ·T²g/‖Tg‖ with
    T = |w| + η for the weights whose entry of ``scales`` is true and T = 1 for the others.
    ‖·‖ is the L2 norm over all the weights together."""
    scaled = [(w.abs() + eta) * g if scale else g for w, g, scale in zip(weights, grads, scales)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
    factor = rho / (norm + NORM_FLOOR)
    return [(w.abs() + eta) * s * factor if scale else s * factor
            for w, s, scale in zip(weights, scaled, scales)]


@register
class SAM(Regularizer):
    name = "sam"
    summary = ("step with the gradient at w + ε, ε = ρ·g/‖g‖ the steepest ascent within radius "
               "ρ (adaptive: ASAM's weight-relative radius); two passes per step")
    paper = "Foret et al. 2021; Kwon et al. 2021 (adaptive)"
    Params = Params
    solo_because = ("its second forward-backward pass at perturbed weights (the perturb hook) "
                    "is not part of the fused loop")
    # the tiny models' steps are small, so a larger radius shows SAM's effect in three epochs
    conformance = {"rho": 0.5}

    def perturb(self, model: nn.Module) -> Callable[[], None]:
        named = [(name, p) for name, p in model.named_parameters() if p.grad is not None]
        weights = [p for _, p in named]
        scales = [self.params.adaptive and "weight" in name for name, _ in named]
        epsilon = sam_perturbation([w.detach() for w in weights], [w.grad for w in weights],
                                   self.params.rho, scales, self.params.eta)
        # restored by copy, not by subtracting ε: w + ε − ε need not round back to w
        saved = [w.detach().clone() for w in weights]
        buffers = list(model.buffers())
        saved_buffers = [b.clone() for b in buffers]
        with torch.no_grad():
            for weight, step in zip(weights, epsilon):
                weight.add_(step)

        def undo() -> None:
            with torch.no_grad():
                for tensor, value in zip(weights + buffers, saved + saved_buffers):
                    tensor.copy_(value)
        return undo

    def describe(self) -> str:
        if self.params.adaptive:
            return (f"sam: adaptive (ASAM), ρ {self.params.rho:g} relative to |w| + "
                    f"{self.params.eta:g}; two forward-backward passes per step")
        return f"sam: ρ {self.params.rho:g}; two forward-backward passes per step"
