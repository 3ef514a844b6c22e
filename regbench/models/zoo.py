"""Field-standard architectures: any ``torchvision.models`` classifier by name, and any timm
model when timm is installed (the ``timm`` extra).

``model: {name: torchvision, arch: resnet18}`` builds the architecture with random weights
(nothing is downloaded), with ``num_classes`` outputs, its first convolution taking the
dataset's channels; ``model: {name: timm, arch: resnet18}`` the same through
``timm.create_model(pretrained=False, in_chans=C)``. Regularizers reach them by module surgery
(``regbench.models.surgery``), as every model: stochastic depth drops the residual branches of
their ResNet blocks. An architecture too deep for the images (inception_v3 on 28×28) is
refused with the size it needs.
"""
from __future__ import annotations

from pydantic import field_validator
from torch import nn

from regbench.config.schema import StrictModel
from regbench.errors import ConfigError
from regbench.models.base import register_model
from regbench.registry import did_you_mean

AUXILIARY = ("googlenet", "inception_v3")   # built with auxiliary heads unless told not to


def architectures() -> list[str]:
    """torchvision's classification architectures (``torchvision.models.list_models``)."""
    import torchvision  # deferred: only the zoo model needs the whole model catalogue

    return torchvision.models.list_models(module=torchvision.models)


def known_architecture(value: str, library: str, names: list[str]) -> str:
    """``value`` when ``library`` (torchvision, timm) has an architecture of that name."""
    if value not in names:
        raise ValueError(f"unknown {library} architecture '{value}'"
                         f"{did_you_mean(value, names)}; see {library}"
                         f"{'.models' if library == 'torchvision' else ''}.list_models()")
    return value


class TorchvisionParams(StrictModel):
    arch: str          # a torchvision.models classification architecture, e.g. resnet18, vgg11, mobilenet_v3_small (random init, no download)

    @field_validator("arch")
    @classmethod
    def _known(cls, value: str) -> str:
        return known_architecture(value, "torchvision", architectures())


def _first_conv(net: nn.Module):
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                return parent, name, child
    return None


@register_model("torchvision", Params=TorchvisionParams, needs_images=True, residual=True,
                summary="any torchvision.models classifier by name (arch: resnet18, …), random "
                        "init, its first conv adapted to the dataset's channels")
def build_torchvision(input_shape, output_dim: int, arch: str) -> nn.Module:
    import torchvision

    extra = {"aux_logits": False} if arch in AUXILIARY else {}   # one output in training
    net = torchvision.models.get_model(arch, weights=None, num_classes=output_dim,
                                       **extra)
    first = _first_conv(net)
    channels = input_shape[0]
    if first is not None and first[2].in_channels != channels:
        parent, name, conv = first
        setattr(parent, name, nn.Conv2d(channels, conv.out_channels, conv.kernel_size,
                                        stride=conv.stride, padding=conv.padding,
                                        dilation=conv.dilation, groups=conv.groups,
                                        bias=conv.bias is not None))
    return _fitted(net, f"torchvision {arch}", input_shape)


def _fitted(net: nn.Module, what: str, input_shape) -> nn.Module:
    """``net`` once a forward of two zero images of ``input_shape`` works; else a config error."""
    import torch

    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(2, *input_shape))
    except RuntimeError as exc:
        raise ConfigError(f"{what} cannot take {tuple(input_shape)} images "
                         f"({str(exc).splitlines()[0]}); choose a shallower architecture or "
                         "larger images", source="model.arch") from None
    net.train()
    return net


def timm_architectures() -> list[str]:
    """timm's model names (``timm.list_models``); a config error without timm."""
    try:
        import timm
    except ImportError:
        raise ValueError("model timm needs the timm package: pip install 'regbench[timm]' "
                         "(or pip install timm)") from None
    return timm.list_models()


class TimmParams(StrictModel):
    arch: str          # a timm model name, e.g. resnet18, efficientnet_b0, convnext_atto (random init, no download; needs the timm extra)

    @field_validator("arch")
    @classmethod
    def _known(cls, value: str) -> str:
        return known_architecture(value, "timm", timm_architectures())


@register_model("timm", Params=TimmParams, needs_images=True, residual=True,
                summary="any timm model by name (arch: resnet18, …; the timm extra), random "
                        "init, in_chans set to the dataset's channels")
def build_timm(input_shape, output_dim: int, arch: str) -> nn.Module:
    import timm

    net = timm.create_model(arch, pretrained=False, num_classes=output_dim,
                            in_chans=input_shape[0])
    return _fitted(net, f"timm {arch}", input_shape)
