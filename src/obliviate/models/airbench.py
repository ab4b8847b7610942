"""``airbench``: the fast CIFAR-10 net of Keller Jordan's airbench94 (Jordan 2024, arXiv:2404.00498).

About 2 M parameters at ``width=1``:

* a 2×2 *patch-whitening* convolution (no padding, 32×32 -> 31×31) whose 2·(3·2·2) = 24 filters
  are ±the eigenvectors of the training patches' covariance divided by √(λ + ε). It is set from
  the data by :meth:`AirbenchNet.obliviate_fit_start` (the hook :func:`obliviate.training.fit` calls
  with up to 5,000 normalised training images) and frozen; only its bias trains, and only for the
  first ``whiten_bias_epochs`` epochs;
* three groups ``conv3×3 -> max-pool 2 -> BN -> GELU -> conv3×3 -> BN -> GELU`` with widths
  64/256/256 (times ``width``); BN has no affine weight (fixed at 1), eps 1e-12 and running-stat
  momentum 0.4; convs start as an identity (Dirac) map on their first ``c_in`` output channels,
  an implicit residual;
* a 3×3 max-pool (3×3 -> 1×1), a bias-free linear head and a fixed logit scale of 1/9.

The training side (batch 1024, Nesterov SGD with decoupled lr/wd, label smoothing 0.2, the
triangular schedule, translate-2 crops and flips, flip TTA) is the recipe
:func:`obliviate.recipes.get_recipe` ``("airbench")``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

BN_EPS = 1e-12
BN_MOMENTUM = 0.4  # PyTorch convention: weight of the new batch (airbench: running decay 0.6)
LOGIT_SCALE = 1.0 / 9.0


def _scaled(channels: int, width: float) -> int:
    if not width > 0:
        raise ValueError(f"airbench width multiplier must be > 0, got {width!r}")
    return max(8, round(channels * width))


class BatchNormNoWeight(nn.BatchNorm2d):
    """Batch norm whose scale is fixed at 1 (only the shift β trains)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.weight.requires_grad_(False)


class DiracConv(nn.Conv2d):
    """3×3 'same' convolution without bias, initialised as identity on its first ``c_in`` outputs."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding=1, bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        n = min(self.in_channels, self.out_channels)
        with torch.no_grad():
            nn.init.dirac_(self.weight[:n])


class ConvGroup(nn.Sequential):
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU (halves the spatial size)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            DiracConv(c_in, c_out),
            nn.MaxPool2d(2),
            BatchNormNoWeight(c_out),
            nn.GELU(),
            DiracConv(c_out, c_out),
            BatchNormNoWeight(c_out),
            nn.GELU(),
        )


class PatchWhitening(nn.Module):
    """A frozen k×k convolution that whitens image patches (ZCA-like, in the eigenbasis).

    ``weight`` (2·d, C, k, k) with d = C·k²: rows ``[V/√(λ+ε); −V/√(λ+ε)]`` where ``λ``, ``V`` are
    the eigenvalues/vectors of the uncentred patch covariance E[p pᵀ]. The bias has shape
    (2·d, 1, 1) so that :func:`obliviate.training.make_optimizer`, which scales the learning rate of
    1-D parameters (BN shifts), leaves it at the base rate as in airbench.
    """

    fitted: torch.Tensor  # bool scalar buffer: filters set from data

    def __init__(self, in_chans: int = 3, kernel_size: int = 2, eps: float = 5e-4) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"whitening eps must be > 0, got {eps!r}")
        d = in_chans * kernel_size * kernel_size
        self.kernel_size, self.eps = kernel_size, eps
        self.weight = nn.Parameter(torch.zeros(2 * d, in_chans, kernel_size, kernel_size), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(2 * d, 1, 1))
        # persistent, so a trained or checkpoint-loaded net is never re-whitened by a later fit
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> torch.Tensor:
        """Set the filters from normalised images (N, C, H, W); returns the eigenvalues λ (descending)."""
        if images.ndim != 4 or images.shape[1] != self.weight.shape[1]:
            raise ValueError(f"expected images (N, {self.weight.shape[1]}, H, W), got {tuple(images.shape)}")
        k, d = self.kernel_size, self.weight.shape[1] * self.kernel_size**2
        cov, n = torch.zeros(d, d, dtype=torch.float64, device=images.device), 0
        for chunk in images.detach().split(500):  # bounded memory: 500 images' patches at a time
            x = chunk.to(torch.float64)
            # every k×k patch as a row, flattened in the (C, kh, kw) order of a conv filter
            patches = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, d)
            cov += patches.T @ patches
            n += len(patches)
        cov /= max(n, 1)
        lam, vec = torch.linalg.eigh(cov)  # ascending
        lam, vec = lam.flip(0), vec.flip(1)
        filters = (vec.T / torch.sqrt(lam.clamp_min(0) + self.eps)[:, None]).reshape(-1, *self.weight.shape[1:])
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))
        self.fitted.fill_(True)
        return lam.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bias added outside the conv: with frozen filters and an input that needs no gradient
        # the conv then has no backward at all (oneDNN's bias-only conv backward is slow on CPU)
        y = F.conv2d(x, self.weight.to(x.dtype))
        return y + self.bias.to(y.dtype)


class AirbenchNet(nn.Module):
    """The airbench94 network; see the module docstring. Hooks drive the whitening set-up."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        width: float = 1.0,
        whiten_bias_epochs: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(whiten_bias_epochs, bool) or not isinstance(whiten_bias_epochs, int) or whiten_bias_epochs < 0:
            raise ValueError(f"whiten_bias_epochs must be an integer >= 0, got {whiten_bias_epochs!r}")
        self.whiten_bias_epochs = whiten_bias_epochs
        c1, c2, c3 = (_scaled(c, width) for c in (64, 256, 256))
        self.whiten = PatchWhitening(in_chans, kernel_size=2)
        self.whiten.bias.requires_grad_(whiten_bias_epochs > 0)
        self.features = nn.Sequential(
            nn.GELU(),
            ConvGroup(self.whiten.out_channels, c1),
            ConvGroup(c1, c2),
            ConvGroup(c2, c3),
            nn.MaxPool2d(3),  # 3×3 -> 1×1 for 32×32 input
            nn.Flatten(),
        )
        self.head = nn.Linear(c3, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.whiten(x))) * LOGIT_SCALE

    def obliviate_fit_start(self, images: torch.Tensor) -> None:
        """Whiten from the training images on the first fit only (fine-tuning keeps the filters)."""
        if not bool(self.whiten.fitted):
            self.whiten.fit(images.to(self.whiten.weight.device))

    def obliviate_epoch_end(self, epoch: int) -> None:
        """Freeze the whitening bias once ``whiten_bias_epochs`` epochs are done."""
        if epoch + 1 >= self.whiten_bias_epochs:
            self.whiten.bias.requires_grad_(False)


@register_model(
    "airbench",
    "airbench94 (Jordan 2024): patch-whitening + 3 conv groups, ~2M params, fast CIFAR-10",
)
def airbench(num_classes: int, in_chans: int = 3, width: float = 1.0, whiten_bias_epochs: int = 3) -> nn.Module:
    return AirbenchNet(num_classes, in_chans, width, whiten_bias_epochs)
