"""Random draws shared by the data regularizers, vectorised over the batch on its device, and
the base of the two that mix pairs of samples (mixup, cutmix).

The draws take an optional ``torch.Generator`` where torch's sampler accepts one (None: torch's
global generator, which the trainer seeds per run); the regularizers pass their run's own
(``Regularizer.own_generator``), Beta draws included.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from regbench.regularizers.base import Incompatible, Regularizer, soft_targets

STOCK_ROWS = 4096     # rows a Stockpile draws at a time


def uniform(shape: tuple[int, ...], low: float | torch.Tensor, high: float | torch.Tensor,
            device: torch.device, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """U(low, high) of ``shape``."""
    u = torch.rand(shape, device=device, generator=generator)
    return low + (high - low) * u


def sample_beta(alpha: float, size: int, device: torch.device,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``size`` independent draws of λ ~ Beta(α, α) = G₁/(G₁+G₂), G ~ Gamma(α, 1), from
    ``generator`` (default: torch's global one). torch.distributions.Gamma takes no generator;
    its sampler (torch._standard_gamma, with the same clamp at the smallest float) does."""
    concentration = torch.full((2, size), float(alpha), device=device)
    gammas = torch._standard_gamma(concentration, generator=generator)
    gammas = gammas.clamp_(min=torch.finfo(gammas.dtype).tiny)
    return gammas[0] / gammas.sum(dim=0).clamp_min(torch.finfo(gammas.dtype).tiny)


def pair_partners(size: int, device: torch.device,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A random pairing of the batch as an involution: partner[partner[i]] = i.

    Samples are matched two by two (mixup and cutmix mix each pair with each other); with an
    odd size the one sample left over is its own partner, i.e. stays unmixed.
    """
    return pairing_rows(1, size, device, generator)[0]


def pairing_rows(rows: int, size: int, device: torch.device,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``rows`` independent pairings of ``size`` samples, one :func:`pair_partners` per row."""
    # a uniform random order per row (float64 keys: ties, broken by index, ~1e-13 likely);
    # consecutive entries of the order pair up: (o0, o1), (o2, o3), …
    order = torch.rand(rows, size, device=device, dtype=torch.float64,
                       generator=generator).argsort(dim=1)
    even = size - size % 2
    partner = torch.arange(size, device=device).repeat(rows, 1)
    partner.scatter_(1, order[:, :even], order[:, :even].view(rows, -1, 2).flip(2)
                     .reshape(rows, even))
    return partner


def box_mask(top: torch.Tensor, left: torch.Tensor, bottom: torch.Tensor, right: torch.Tensor,
             size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) boolean masks of the boxes rows [top, bottom) × columns [left, right) in
    images of ``size`` (H, W).

    Built from coordinate grids, so each sample has its own box with no per-sample loop.
    Boxes reaching past the border are simply clipped by the grid.
    """
    height, width = size
    rows = torch.arange(height, device=top.device).view(1, height, 1)
    cols = torch.arange(width, device=top.device).view(1, 1, width)
    return ((rows >= top.view(-1, 1, 1)) & (rows < bottom.view(-1, 1, 1))
            & (cols >= left.view(-1, 1, 1)) & (cols < right.view(-1, 1, 1)))


def check_pairing(name: str, batch_size: int) -> list[str]:
    """Refuse a batch with nobody to mix with; warn about an odd one (mixup, cutmix)."""
    if batch_size < 2:
        raise Incompatible("batch_size 1 leaves no second sample to mix with")
    if batch_size % 2:
        return [f"odd batch_size {batch_size}: samples are mixed in pairs, so one sample of "
                f"every batch is left un-mixed by {name}; use an even batch size"]
    return []


class Stockpile:
    """Random draws made thousands of rows at a time and handed out batch by batch.

    Inside a training step each small tensor op costs about 10 µs of dispatch, more than its
    arithmetic: drawing a batch's parameters took a dozen such ops. Drawn ``STOCK_ROWS`` rows
    at a time from the same global generator, the rows are as independent as before and a run
    stays reproducible (the draws happen at the same points of the same sequence of batches).
    ``draw(count, device)`` returns a tensor of ``count`` rows.
    """

    def __init__(self, draw: Callable[[int, torch.device], torch.Tensor],
                 rows: int = STOCK_ROWS):
        self.draw, self.rows = draw, rows
        self.stock: Optional[torch.Tensor] = None
        self.next = 0

    def take(self, count: int, device: torch.device) -> torch.Tensor:
        if (self.stock is None or self.next + count > len(self.stock)
                or self.stock.device != device):
            self.stock = self.draw(max(self.rows, count), device)
            self.next = 0
        rows = self.stock[self.next:self.next + count]
        self.next += count
        return rows


class BlockPairings:
    """Pairings within each batch of a block of consecutive batches (mixup, cutmix): one
    :func:`pair_partners` per batch, drawn from a :class:`Stockpile` per batch size."""

    MAX_SIZES = 4  # a run has two batch sizes (full and last); a caller may have more

    def __init__(self, generator: Optional[torch.Generator] = None):
        self.stocks: dict[int, Stockpile] = {}
        self.generator = generator

    def _take(self, count: int, size: int, device: torch.device) -> torch.Tensor:
        if size not in self.stocks:
            if len(self.stocks) >= self.MAX_SIZES:
                self.stocks.clear()
            self.stocks[size] = Stockpile(
                lambda rows, device: pairing_rows(rows, size, device, self.generator), rows=64)
        return self.stocks[size].take(count, device)

    def partners(self, rows: int, batch_size: int, device: torch.device) -> torch.Tensor:
        """Each row's partner (a row index into the block) for ``rows`` rows in batches of
        ``batch_size``; a shorter last batch is paired within itself."""
        full, rest = divmod(rows, batch_size)
        parts = []
        if full:
            offsets = torch.arange(0, full * batch_size, batch_size, device=device)
            parts.append((self._take(full, batch_size, device) + offsets.view(-1, 1)).flatten())
        if rest:
            parts.append(self._take(1, rest, device)[0] + full * batch_size)
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class PairMixer(Regularizer):
    """Base of mixup and cutmix: each sample is mixed with its partner in a random pairing of
    its own batch, also when the trainer hands over a block of several batches."""

    tasks = frozenset({"classification"})
    batch_stage = "mix"

    fusable = True      # every draw from the run's own generator: fuses member by member
    batches_by_member = True

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.pairings = BlockPairings(self.own_generator())

    @classmethod
    def check(cls, params, ctx):
        return check_pairing(cls.name, ctx.batch_size)

    def batch(self, x, y):
        return self.batches(x, y, x.shape[0])

    def batches(self, x, y, batch_size):
        partner = self.pairings.partners(x.shape[0], batch_size, x.device)
        return self.mix_with(x, soft_targets(y, self.ctx.output_dim), partner)

    def mix_with(self, x: torch.Tensor, y_soft: torch.Tensor, partner: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̃, ỹ): each row mixed with the row ``partner`` names."""
        raise NotImplementedError
