"""Random draws owned by a run: each stream is a generator seeded from the run's id and what
the draws are for, so a run draws the same numbers whether it trains alone, fused in a group of
any size and membership (regbench.engine.fused), in a worker process or on Ray, and after a
resume. The global RNG is left to what every run shares the use of (initial weights, batch
order), which the fused trainer already keeps per member.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Optional

import torch


def stream_seed(key: str) -> int:
    """A 63-bit seed from a stream's key (e.g. ``"<run id> dropout 0"``)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def run_generator(key: str, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``key`` ("<run id> <purpose>")."""
    return torch.Generator(device=device).manual_seed(stream_seed(key))


class Uniforms:
    """U(0, 1) draws (N(0, 1) with ``normal``) of one stream per member (a solo run is a group
    of one). Drawn many rows ahead (one call per member per refill, not per step) in pieces
    whose size depends only on a row's width, never on the group: a member's n-th row is the
    same number in any group, as long as every member takes the same rows at a time (the solo
    and fused loops take a batch, or a block of batches, at a time alike).
    ``take`` hands out the next rows of every member: [members, rows, *features].
    ``draw``: another sampler called as ``torch.rand`` is (shape, generator=, device=), e.g.
    DropConnect's 15-bit integers."""

    FLOATS_AHEAD = 2**18          # per member and stream (1 MiB)

    def __init__(self, keys: list[str], device: torch.device, normal: bool = False,
                 draw: Optional[Callable[..., torch.Tensor]] = None):
        self.generators = [torch.Generator(device=device).manual_seed(stream_seed(key))
                           for key in keys]
        self.device = device
        self.draw = draw or (torch.randn if normal else torch.rand)
        self.ahead: Optional[torch.Tensor] = None
        self.used = 0

    def take(self, rows: int, features: tuple[int, ...]) -> torch.Tensor:
        if self.ahead is None or self.used + rows > self.ahead.shape[1] \
                or self.ahead.shape[2:] != features:
            ahead = max(rows, self.FLOATS_AHEAD // max(1, math.prod(features)))
            self.ahead = torch.stack([self.draw((ahead, *features), generator=g,
                                                device=self.device)
                                      for g in self.generators])
            self.used = 0
        self.used += rows
        return self.ahead[:, self.used - rows:self.used]


def member_column(values: list[float], like: torch.Tensor, cache: Optional[dict] = None,
                  dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Each member's value as a [M, 1, …] column that broadcasts over ``like`` [M, …]: a solo
    run passes one value, so solo and fused runs take the same tensor arithmetic. Copying it
    to a GPU waits for the device: give a ``cache`` (a dict the caller keeps) to copy it once
    per device, dtype and shape rather than once per call. ``dtype``: other than ``like``'s."""
    dtype = dtype or like.dtype
    key = (tuple(values), like.device, dtype, like.dim())
    if cache is not None and key in cache:
        return cache[key]
    column = torch.tensor(values, dtype=dtype, device=like.device)
    column = column.view(-1, *[1] * (like.dim() - 1))
    if cache is not None:
        cache[key] = column
    return column


def kept_scaled(h: torch.Tensor, keep: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverted dropout of h [M, ...] where member m keeps a value when its uniform draw
    U < keep[m] = 1 − p_m (probability 1 − p_m) and scales the kept ones by 1/keep[m]: the same
    arithmetic for a solo run (M = 1) and every member of a fused group."""
    keep = keep.view(-1, *[1] * (h.dim() - 1))
    return h * (uniforms < keep).to(h.dtype).div_(keep)
