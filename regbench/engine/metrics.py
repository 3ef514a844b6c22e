"""Metrics computed on the device from whole-split outputs, one host sync per call.

Classification: cross-entropy loss, accuracy, macro precision/recall/F1 averaged over the
classes present in the split's targets or predictions (scikit-learn's default ``labels``; a
present class with no predictions or no samples contributes 0, as ``zero_division=0``), and expected
calibration error over ``ECE_BINS`` equal-width confidence bins. Regression: the loss
C₀ = 1/(2n)·Σ‖y − a‖², MSE, MAE and R² (averaged over outputs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ECE_BINS = 15


def classification_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the samples; ``target`` is class indices or soft
    probabilities. With a leading member axis (logits [M, B, C]) each member's loss [M]: one
    arithmetic for a solo run and every member of a fused group, which therefore agree bit for
    bit (a mean-reduced F.cross_entropy rounds differently from per-sample losses averaged)."""
    soft = target.dtype.is_floating_point
    samples = target.shape[:-1] if soft else target.shape
    per_sample = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                 target.reshape(-1, target.shape[-1]) if soft
                                 else target.reshape(-1), reduction="none")
    return per_sample.view(samples).mean(dim=-1)


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """C₀ = 1/(2n)·Σ‖y − a‖² (half the per-sample squared error, averaged over samples); with a
    leading member axis each member's [M], by the same arithmetic."""
    return 0.5 * (prediction - target).pow(2).sum(dim=-1).mean(dim=-1)


def expected_calibration_error(probs: torch.Tensor, target: torch.Tensor,
                               bins: int = ECE_BINS) -> torch.Tensor:
    """Σ_b (n_b/N)·|accuracy_b − confidence_b| over equal-width confidence bins; ``probs``
    [..., N, C], ``target`` [..., N] -> [...] (one value per leading index)."""
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == target).to(probs.dtype)
    lead, n = confidence.shape[:-1], confidence.shape[-1]
    if confidence.is_cuda:  # index_add_ sums with atomics on a GPU: bin on the CPU, reproducibly
        confidence, correct = confidence.cpu(), correct.cpu()
    confidence, correct = confidence.reshape(-1, n), correct.reshape(-1, n)
    # Bin b holds confidences in (b/B, (b+1)/B]; confidence 0 goes to the first bin.
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    index = (index + bins * torch.arange(len(index)).unsqueeze(1)).flatten()   # [rows · bins]
    count = torch.zeros(confidence.numel() // n * bins, dtype=probs.dtype,
                        device=confidence.device).index_add_(0, index, torch.ones_like(index,
                                                                                      dtype=probs.dtype))
    conf_sum = torch.zeros_like(count).index_add_(0, index, confidence.flatten())
    acc_sum = torch.zeros_like(count).index_add_(0, index, correct.flatten())
    gap = (acc_sum - conf_sum).abs().view(-1, bins).sum(1) / n
    return gap.view(lead).to(probs.device)


def classification_metrics(logits: torch.Tensor, target: torch.Tensor,
                           num_classes: int) -> dict[str, torch.Tensor]:
    """All classification metrics as tensors (no host sync): ``logits`` [..., N, C] and
    ``target`` [N] or [..., N] give one value per leading index (0-dim for [N, C] logits;
    [M] for the M members of a fused model)."""
    logits = logits.float()
    lead, n = logits.shape[:-2], logits.shape[-2]
    target = target.expand(*lead, n)
    predicted = logits.argmax(dim=-1)
    rows = predicted.numel() // n
    cells = num_classes * num_classes
    offset = (cells * torch.arange(rows, device=logits.device)).view(*lead, 1)
    confusion = torch.bincount((offset + target * num_classes + predicted).flatten(),
                               minlength=rows * cells).view(*lead, num_classes, num_classes)
    confusion = confusion.to(logits.dtype)
    true_positive = confusion.diagonal(dim1=-2, dim2=-1)
    predicted_count = confusion.sum(dim=-2)
    actual_count = confusion.sum(dim=-1)
    precision = torch.where(predicted_count > 0, true_positive / predicted_count.clamp_min(1), 0.0)
    recall = torch.where(actual_count > 0, true_positive / actual_count.clamp_min(1), 0.0)
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), 0.0)
    # classes absent from both targets and predictions say nothing about this split
    present = ((predicted_count + actual_count) > 0).to(logits.dtype)
    classes = present.sum(dim=-1).clamp_min(1)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                           reduction="none").view(*lead, n).mean(dim=-1)
    return {
        "loss": loss,
        "accuracy": true_positive.sum(dim=-1) / n,
        "precision": (precision * present).sum(dim=-1) / classes,
        "recall": (recall * present).sum(dim=-1) / classes,
        "f1": (f1 * present).sum(dim=-1) / classes,
        "ece": expected_calibration_error(logits.softmax(dim=-1), target),
    }


def regression_metrics(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """All regression metrics as tensors (no host sync): ``prediction`` [..., N, D] and
    ``target`` [N, D] or [..., N, D] give one value per leading index."""
    prediction, target = prediction.float(), target.float()
    error = prediction - target
    total = (target - target.mean(dim=-2, keepdim=True)).pow(2).sum(dim=-2)
    residual = error.pow(2).sum(dim=-2)
    r2 = torch.where(total > 0, 1 - residual / total.clamp_min(1e-30),
                     torch.where(residual > 0, torch.zeros_like(residual),
                                 torch.ones_like(residual)))
    return {
        "loss": 0.5 * error.pow(2).sum(dim=-1).mean(dim=-1),
        "mse": error.pow(2).mean(dim=(-2, -1)),
        "mae": error.abs().mean(dim=(-2, -1)),
        "r2": r2.mean(dim=-1),
    }
