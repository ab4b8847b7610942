"""timm's CoAtNet and EfficientFormerV2, built for 32×32 input (``img_size=32``), no download.

timm is imported lazily: these factories raise an actionable error when it is missing. They pass
only declared arguments to timm (never ``**kwargs``), so a checkpoint's metadata cannot reach timm's
file-loading options (``checkpoint_path``, ``pretrained_cfg_overlay``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .registry import register_model


def _timm_create(arch: str, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    try:
        import timm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"model {arch!r} needs timm: pip install 'obliviate[vision]'") from e
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, img_size=32, **kwargs)


_COATNET = {"0": "coatnet_0_rw_224", "nano": "coatnet_nano_rw_224", "pico": "coatnet_pico_rw_224"}
_EFFV2 = {
    "s0": "efficientformerv2_s0",
    "s1": "efficientformerv2_s1",
    "s2": "efficientformerv2_s2",
    "l": "efficientformerv2_l",
}


@register_model(
    "coatnet", "timm CoAtNet (Dai et al. 2021) at 32×32; variant '0' (27 M) or 'nano'/'pico' for CPU", family="timm"
)
def coatnet(
    num_classes: int, in_chans: int = 3, variant: str = "0", drop_rate: float = 0.0, drop_path_rate: float = 0.0
) -> nn.Module:
    if variant not in _COATNET:
        raise ValueError(f"coatnet variant must be one of {sorted(_COATNET)}, got {variant!r}")
    return _timm_create(_COATNET[variant], num_classes, in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model(
    "efficientformerv2", "timm EfficientFormerV2 (Li et al. 2023) at 32×32; variant s0/s1/s2/l", family="timm"
)
def efficientformerv2(
    num_classes: int, in_chans: int = 3, variant: str = "s0", drop_rate: float = 0.0, drop_path_rate: float = 0.0
) -> nn.Module:
    if variant not in _EFFV2:
        raise ValueError(f"efficientformerv2 variant must be one of {sorted(_EFFV2)}, got {variant!r}")
    return _timm_create(_EFFV2[variant], num_classes, in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
