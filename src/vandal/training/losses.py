"""APRIL-GAN's segmentation losses (docs/method.md §3), written as pure functions.

Both follow the reference code's ``FocalLoss`` / ``BinaryDiceLoss`` exactly, including their
small constants, so trained adapters are comparable with the authors' release.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import torch

FOCAL_SMOOTH = 1e-5  # the reference clamps the one-hot target and adds this to p_t


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               smooth: float = FOCAL_SMOOTH) -> torch.Tensor:
    """probs ``[B, 2, H, W]`` (softmax over the channel), target ``[B, H, W]`` in {0, 1} -> scalar.

    Mean over pixels of ``-(1 - p_t)^gamma * log(p_t)`` with the reference's label smoothing:
    the one-hot target clamped to ``[smooth, 1 - smooth]`` and ``p_t`` shifted by ``smooth``.
    """
    target = target.to(probs.dtype)
    one_hot = torch.stack([1 - target, target], dim=1).clamp(smooth, 1.0 - smooth)
    pt = (one_hot * probs).sum(dim=1) + smooth
    return (-((1 - pt) ** gamma) * pt.log()).mean()


def dice_loss(abnormal: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """abnormal probability ``[B, H, W]``, target ``[B, H, W]`` -> ``1 - mean_b dice_b`` (scalar)."""
    p = abnormal.reshape(abnormal.shape[0], -1)
    t = target.reshape(target.shape[0], -1).to(p.dtype)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 1 - dice.mean()


def adapter_loss(tap_probs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Summed over taps: focal on the 2-channel map + dice on the abnormal channel.

    tap_probs: one ``[B, 2, H, W]`` softmax map per tap; target ``[B, H, W]`` in {0, 1}.
    """
    if not tap_probs:
        raise ValueError("adapter_loss needs at least one tap")
    return functools.reduce(operator.add, (focal_loss(p, target) + dice_loss(p[:, 1], target) for p in tap_probs))
