"""Image augmentations in plain torch (no torchvision), seeded by a ``torch.Generator``.

All functions take a batch ``x`` of shape N x C x H x W and return a new batch
of the same shape; every random draw comes from the ``generator`` argument, so
the same generator state gives the same output. These are the "crop", "affine"
and "noise" families of the SimCLR augmentation study (Chen et al. 2020,
arXiv 2002.05709, Sec. 3), scaled down for small grey-scale digits (no colour
distortion, no flips: a flipped digit is another symbol).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["random_translate", "random_affine", "gaussian_noise", "Augment"]


def _check(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"augmentations expect a batch N x C x H x W, got shape {tuple(x.shape)}.")


def random_translate(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop: zero-pad by ``max_shift`` pixels and take an H x W window at a random offset per image.

    Equivalent to shifting each image by (dy, dx), each uniform in
    {-max_shift, ..., max_shift}, filling with zeros.
    """
    _check(x)
    if max_shift <= 0:
        return x.clone()
    n, c, h, w = x.shape
    p = int(max_shift)
    xp = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)).to(x.device)  # n x h
    cols = (dx[:, None] + torch.arange(w)).to(x.device)  # n x w
    idx = torch.arange(n, device=x.device)
    out = xp[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # n x h x w x c
    return out.permute(0, 3, 1, 2).contiguous()


def random_affine(x: torch.Tensor, degrees: float = 10.0, scale: tuple[float, float] = (0.9, 1.1),
                  translate: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Small random affine map per image: rotation in [-degrees, degrees], isotropic zoom in ``scale``,
    translation up to ``translate`` (a fraction of the half-size); bilinear resampling
    (``F.affine_grid`` + ``F.grid_sample``), zeros outside the image.
    """
    _check(x)
    n = x.shape[0]
    u = torch.rand((n, 4), generator=generator, dtype=torch.float64)
    ang = (2 * u[:, 0] - 1) * math.radians(degrees)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    t = (2 * u[:, 2:] - 1) * translate
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s  # output -> input sampling map: inverse zoom
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + std * eps with eps ~ N(0, 1) drawn from ``generator``."""
    _check(x)
    if std <= 0:
        return x.clone()
    return x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


@dataclass(frozen=True)
class Augment:
    """A composed augmentation: translate (pad + random crop) -> small affine -> Gaussian noise.

    ``Augment()(x, generator)`` returns a new batch; set a field to 0 to skip
    that step. The defaults suit 8x8 digits; for 28x28 images use e.g.
    ``Augment(max_shift=3)``.
    """

    max_shift: int = 1
    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    noise_std: float = 0.05

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = random_translate(x, self.max_shift, generator)
        if self.degrees or tuple(self.scale) != (1.0, 1.0):
            x = random_affine(x, self.degrees, self.scale, 0.0, generator)
        return gaussian_noise(x, self.noise_std, generator)
