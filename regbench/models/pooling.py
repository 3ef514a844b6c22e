"""2×2 max-pooling: ``nn.MaxPool2d(2)`` with a faster CPU path for evaluation.

torch's CPU kernel for NCHW max-pooling walks every window element by element and records the
argmax for a backward pass; in the eval passes of the LeNet-style cnn it took most of the
time. Where no gradient is wanted (``inference_mode``, ``no_grad``, or inputs that do not
require one) the maximum is three element-wise ``torch.maximum`` of the four strided window
corners: the same values, NaN included, 5–8× faster. Training keeps torch's kernel: a
hand-built argmax was measured no faster inside a full training step. Other devices always use
torch's kernel (cuDNN on CUDA).
"""
from __future__ import annotations

import torch
from torch import nn


def max_of_window_corners(x: torch.Tensor) -> torch.Tensor:
    """max over each non-overlapping 2×2 window of the last two dims (floor mode)."""
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    top = torch.maximum(x[..., 0:height:2, 0:width:2], x[..., 0:height:2, 1:width:2])
    low = torch.maximum(x[..., 1:height:2, 0:width:2], x[..., 1:height:2, 1:width:2])
    return torch.maximum(top, low)


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)``: same values and gradients, faster CPU evaluation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        if x.device.type == "cpu" and not needs_grad:
            return max_of_window_corners(x)
        return nn.functional.max_pool2d(x, 2)

    def extra_repr(self) -> str:
        return "kernel_size=2, stride=2"
