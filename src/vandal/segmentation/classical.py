"""A segmenter that needs no weights: foreground = far from the border's colour, then components.

Industrial multi-object scenes (VisA capsules, candles, macaroni) lie on a plain backdrop, so the
colour of the image border is a good background model; this is the offline fallback for SAM.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .base import ObjectMask, as_rgb, filter_masks, mask_box

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """sRGB uint8 (H, W, 3) -> CIE Lab (D65) float32 (H, W, 3); Euclidean distance there is
    roughly perceptual, which plain RGB distance is not for dark objects."""
    rgb = image.astype(np.float32) / 255.0
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], np.float32
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883], np.float32)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1
    )
    return lab.astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample: the cut maximising the between-class variance."""
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centers)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    # Threshold sits at the upper edge of the last background bin.
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx**2 + yy**2) <= radius**2


class ClassicalSegmenter:
    """Background colour from the border, Otsu foreground, morphology, 8-connected components.

    Parameters
    ----------
    border_frac: width of the border band used to estimate the background, fraction of the side.
    threshold: colour distance (Lab, delta-E 76) above which a pixel is foreground; None = Otsu
        on log(1 + distance).
    min_threshold: floor on the Otsu threshold, so a scene with no object (pure noise) stays empty.
    median_size: median filter window (working-resolution pixels) on the distance map, against
        noise; 1 turns it off.
    open_radius, close_radius: disk radii (working pixels) of the opening (removes specks and
        thin bridges) and closing (heals gaps, e.g. specular highlights inside an object).
    fill_holes: fill enclosed background (a bottle seen from above is a ring without it).
    min_area_frac, max_area_frac: component size filter, fractions of the image area.
    max_side: the image is processed with its longest side shrunk to this (speed); masks come back
        at full size.
    """

    def __init__(
        self,
        border_frac: float = 0.03,
        threshold: float | None = None,
        min_threshold: float = 10.0,
        median_size: int = 3,
        open_radius: int = 2,
        close_radius: int = 3,
        fill_holes: bool = True,
        min_area_frac: float = 0.001,
        max_area_frac: float = 0.9,
        max_side: int = 512,
    ) -> None:
        self.border_frac = border_frac
        self.threshold = threshold
        self.min_threshold = min_threshold
        self.median_size = median_size
        self.open_radius = open_radius
        self.close_radius = close_radius
        self.fill_holes = fill_holes
        self.min_area_frac = min_area_frac
        self.max_area_frac = max_area_frac
        self.max_side = max_side

    def background_distance(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) float32 Lab distance from the median border colour."""
        from scipy import ndimage  # deferred: ~0.35 s that a detector without object banks never needs

        lab = rgb_to_lab(image)
        h, w = lab.shape[:2]
        band = max(1, int(round(self.border_frac * min(h, w))))
        border = np.concatenate(
            [
                lab[:band].reshape(-1, 3),
                lab[-band:].reshape(-1, 3),
                lab[band:-band, :band].reshape(-1, 3),
                lab[band:-band, -band:].reshape(-1, 3),
            ]
        )
        # The median ignores objects that touch the border, as long as they cover under half of it.
        background = np.median(border, axis=0)
        dist = np.linalg.norm(lab - background, axis=-1)
        if self.median_size > 1:
            # Median, not Gaussian: it silences pixel noise without blurring object edges (a blur
            # plus a low threshold grows every mask by the blur width).
            dist = ndimage.median_filter(dist, self.median_size)
        return dist.astype(np.float32)

    def foreground(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) bool foreground after thresholding and clean-up."""
        return self._clean(self._raw_foreground(image))

    def _raw_foreground(self, image: np.ndarray) -> np.ndarray:
        dist = self.background_distance(image)
        thr = self.threshold
        if thr is None:
            # Otsu on log-distance: objects of several colours spread the distances widely, and
            # plain Otsu then cuts between near and far objects instead of background and objects.
            thr = max(float(np.expm1(otsu_threshold(np.log1p(dist)))), self.min_threshold)
        return dist > thr

    def _clean(self, fg: np.ndarray) -> np.ndarray:
        from scipy import ndimage  # deferred: ~0.35 s that a detector without object banks never needs

        if self.open_radius > 0:
            fg = ndimage.binary_opening(fg, structure=_disk(self.open_radius))
        if self.close_radius > 0:
            r = self.close_radius
            # Pad first: scipy erodes from an implicit False border, which would eat objects that
            # touch the image edge.
            padded = np.pad(fg, r + 1, mode="edge")
            fg = ndimage.binary_closing(padded, structure=_disk(r))[r + 1 : -r - 1, r + 1 : -r - 1]
        if self.fill_holes:
            fg = ndimage.binary_fill_holes(fg)
        return fg

    def __call__(self, image: np.ndarray) -> list[ObjectMask]:
        """(H, W, 3) uint8 -> objects, largest first. score = fraction of the object's pixels that
        passed the threshold before clean-up (low when the mask is mostly filled-in holes)."""
        from scipy import ndimage  # deferred: ~0.35 s that a detector without object banks never needs

        image = as_rgb(image)
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        raw = self._raw_foreground(small)
        labels, n = ndimage.label(self._clean(raw), structure=_EIGHT_CONNECTED)
        if n == 0:
            return []
        if scale < 1.0:
            # Nearest-neighbour keeps label ids intact on the way back to full size.
            labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize((w, h), Image.Resampling.NEAREST))
            raw = np.asarray(Image.fromarray(raw).resize((w, h), Image.Resampling.NEAREST))
        objects = []
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            mask = np.zeros((h, w), dtype=bool)
            mask[sl] = labels[sl] == k
            inside = mask[sl]
            score = float(raw[sl][inside].mean()) if inside.any() else 0.0
            objects.append(ObjectMask(mask=mask, box=mask_box(mask), score=score))
        objects = filter_masks(objects, h * w, self.min_area_frac, self.max_area_frac)
        return sorted(objects, key=lambda o: -o.area)
