"""Field-standard architectures: any ``torchvision.models`` classifier by name.

``model: {name: torchvision, arch: resnet18}`` builds the architecture with random weights
(nothing is downloaded), with ``num_classes`` outputs, its first convolution taking the
dataset's channels. The model builds its own layers, so regularizers reach it by module surgery
(``regbench.models.surgery``): stochastic depth drops the residual branches of its ResNet
blocks. An architecture too deep for the images (inception_v3 on 28×28) is refused with the
size it needs.
"""
from __future__ import annotations

from pydantic import field_validator
from torch import nn

from regbench.config.schema import StrictModel
from regbench.errors import ConfigError
from regbench.models.base import model
from regbench.registry import did_you_mean


AUXILIARY = ("googlenet", "inception_v3")   # built with auxiliary heads unless told not to


def architectures() -> list[str]:
    """torchvision's classification architectures (``torchvision.models.list_models``)."""
    import torchvision  # deferred: only the zoo model needs the whole model catalogue

    return torchvision.models.list_models(module=torchvision.models)


class TorchvisionParams(StrictModel):
    arch: str          # a torchvision.models classification architecture, e.g. resnet18, vgg11, mobilenet_v3_small (random init, no download)

    @field_validator("arch")
    @classmethod
    def _known(cls, value: str) -> str:
        names = architectures()
        if value not in names:
            raise ValueError(f"unknown torchvision architecture '{value}'"
                             f"{did_you_mean(value, names)}; see torchvision.models.list_models()")
        return value


def _first_conv(net: nn.Module):
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                return parent, name, child
    return None


@model("torchvision", Params=TorchvisionParams, needs_images=True, residual=True,
       own_layers=True,
       summary="any torchvision.models classifier by name (arch: resnet18, …), random init, "
               "its first conv adapted to the dataset's channels")
def build_torchvision(params: TorchvisionParams, input_shape, output_dim: int,
                      factory) -> nn.Module:
    import torch
    import torchvision

    extra = {"aux_logits": False} if params.arch in AUXILIARY else {}   # one output in training
    net = torchvision.models.get_model(params.arch, weights=None, num_classes=output_dim,
                                       **extra)
    first = _first_conv(net)
    channels = input_shape[0]
    if first is not None and first[2].in_channels != channels:
        parent, name, conv = first
        setattr(parent, name, nn.Conv2d(channels, conv.out_channels, conv.kernel_size,
                                        conv.stride, conv.padding, conv.dilation, conv.groups,
                                        conv.bias is not None))
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(2, *input_shape))
    except RuntimeError as exc:
        raise ConfigError(f"torchvision {params.arch} cannot take {tuple(input_shape)} images "
                         f"({str(exc).splitlines()[0]}); choose a shallower architecture or "
                         "larger images", source="model.arch") from None
    net.train()
    return net
