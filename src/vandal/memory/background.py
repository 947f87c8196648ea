"""AnomalyDINO's zero-shot background mask: which patches of a test view show the object.

DINOv2 patch features of an object on a plain background split along their first principal
component. Per view: project the (centred) patch features on it; the object is where the projection
exceeds ``PCA_THRESHOLD``, or, when that keeps too little of the image's centre, where the negated
projection does (the component's sign is arbitrary); then a 3 x 3 dilation and a 3 x 3 closing fill
small holes. Masked-out patches score distance 0. Pure functions (docs/text-free.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PCA_THRESHOLD = 10.0  # on the first component's projection, in feature units (the authors' value)
CENTRE_BORDER = 0.2  # the centre crop leaves this fraction of the grid on each side
CENTRE_KEPT = 0.35  # the mask must keep more than this share of the centre crop, else it is flipped
KERNEL = 3


def first_component(features: torch.Tensor) -> torch.Tensor:
    """``[n, C]`` -> ``[n]``: the centred features projected on their first principal component, signed
    as scikit-learn's PCA (the component's largest-magnitude entry positive)."""
    centred = features.double() - features.double().mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    component = vh[0]
    component = component * torch.sign(component[component.abs().argmax()])
    return (centred @ component).to(features.dtype)


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """Dilation of a flat ``[n]`` bool by 3 in raster order; beyond the ends counts as background
    (OpenCV's default border)."""
    return F.max_pool1d(mask[None, None].float(), KERNEL, stride=1, padding=KERNEL // 2)[0, 0] > 0


def _erode(mask: torch.Tensor) -> torch.Tensor:
    """Erosion of a flat ``[n]`` bool by 3 in raster order; beyond the ends does not erode (OpenCV)."""
    return -F.max_pool1d(-mask[None, None].float(), KERNEL, stride=1, padding=KERNEL // 2)[0, 0] > 0


def background_mask(grid: torch.Tensor) -> torch.Tensor:
    """One view's patch features ``[h, w, C]`` -> ``[h, w]`` bool, True on the object."""
    h, w, c = grid.shape
    projection = first_component(grid.reshape(-1, c)).reshape(h, w)
    mask = projection > PCA_THRESHOLD
    centre = mask[int(h * CENTRE_BORDER):int(h * (1 - CENTRE_BORDER)), int(w * CENTRE_BORDER):int(w * (1 - CENTRE_BORDER))]
    if centre.sum() <= centre.numel() * CENTRE_KEPT:
        mask = -projection > PCA_THRESHOLD
    dilated = _dilate(mask.reshape(-1))
    return _erode(_dilate(dilated)).reshape(h, w)  # closing = dilation, then erosion


def masked_grids(grids: list[torch.Tensor], features: torch.Tensor) -> list[torch.Tensor]:
    """Per-tap distance grids ``[V, h, w]`` with the background patches of each view set to 0; the mask
    comes from ``features`` ``[V, h, w, C]`` (the deepest tap), on the same grid as every tap."""
    masks = torch.stack([background_mask(view) for view in features]).to(grids[0].device)
    for grid in grids:
        if grid.shape != masks.shape:
            raise ValueError(f"background masking needs every tap on the deepest tap's grid {tuple(masks.shape[1:])}, "
                             f"got {tuple(grid.shape[1:])}: use one tap (e.g. --taps -1 on DINOv2)")
    return [grid * masks for grid in grids]
