"""Pixel rules: a numpy array or a decoded PIL image -> ``[H, W, 3]`` uint8 RGB.

One rule for arrays and PIL images (the same image scores the same whatever form it came in):

- The dtype decides the scale, never the content: uint8 as is; bool -> 0 / 255; uint16 (and
  PIL's 16-bit modes ``I;16*`` and ``I``, which hold 16-bit samples from PNG and TIFF) -> the full
  16-bit range scaled to 8 bits; other integer types must hold 8-bit values (0..255); floats
  (and PIL's ``F``) must lie in [0, 1] (up to half an 8-bit step of rounding) and are scaled by 255;
  NaN and infinity are refused. Anything else ends in :class:`UnreadableImageError` saying to pass
  uint8 or to scale.
- Channels: ``[H, W]`` and ``[H, W, 1]`` are gray, ``[H, W, 2]`` gray + alpha, ``[H, W, 3]`` RGB,
  ``[H, W, 4]`` RGBA. Alpha is composited on black (``value * alpha / 255``, rounded), so
  transparent padding reads as black, never as texture.

Conversions run over bands of rows, so their temporaries stay a few MB whatever the image size:
the only full-size allocation is the ``[H, W, 3]`` uint8 result.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BAND_BYTES = 1 << 22  # rows are converted in bands of about this many input bytes
_HALF_STEP = 0.5 / 255.0  # floats this far outside [0, 1] still round into 0..255
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class UnreadableImageError(ValueError):
    """An input that is not a decodable image; the message names the file and what to do."""


def band_rows(width: int, bytes_per_pixel: int) -> int:
    """Rows per band so that a band holds about :data:`BAND_BYTES`."""
    return max(1, BAND_BYTES // max(1, width * bytes_per_pixel))


def _to_uint8(values: np.ndarray, source: str, sixteen_bit: bool = False) -> np.ndarray:
    """One band of any supported dtype -> uint8, same shape (see the module rules)."""
    kind, size = values.dtype.kind, values.dtype.itemsize
    if kind == "u" and size == 1:
        return values
    if kind == "b":
        return values.astype(np.uint8) * np.uint8(255)
    if kind == "f":
        if not np.isfinite(values).all():
            raise UnreadableImageError(f"{source}: image holds NaN or infinite values; replace them before scoring")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < -_HALF_STEP or high > 1.0 + _HALF_STEP:
            raise UnreadableImageError(
                f"{source}: float pixel values must lie in [0, 1], found values in [{low:g}, {high:g}]; "
                "pass uint8 (0..255) or scale the image into [0, 1] (e.g. image / 255)")
        if size < 4:
            values = values.astype(np.float32)  # float16 cannot hold x * 255 to the unit
        return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    if kind in "iu":
        top = 65535 if sixteen_bit or (kind == "u" and size == 2) else 255
        if values.size and (int(values.min()) < 0 or int(values.max()) > top):
            raise UnreadableImageError(
                f"{source}: {values.dtype} pixel values must lie in 0..{top}, found "
                f"{int(values.min())}..{int(values.max())}; pass uint8 (0..255) or uint16 (0..65535)")
        if top == 255:
            return values.astype(np.uint8)
        # Rounded division by 257 maps 0..65535 onto 0..255 exactly (65535 = 255 * 257).
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise UnreadableImageError(f"{source}: unsupported pixel type {values.dtype}; pass uint8, uint16 or float in [0, 1]")


def composite_on_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 ``[..., C]`` colour and uint8 ``[...]`` alpha -> ``color * alpha / 255`` rounded, uint8."""
    weighted = color.astype(np.uint32) * alpha[..., None].astype(np.uint32)
    return ((2 * weighted + 255) // 510).astype(np.uint8)


def _band_to_rgb(band: np.ndarray, source: str, sixteen_bit: bool = False) -> np.ndarray:
    """``[h, W]`` or ``[h, W, C]`` (C in 1..4) of any supported dtype -> ``[h, W, 3]`` uint8."""
    band = _to_uint8(band, source, sixteen_bit)
    if band.ndim == 2:
        band = band[..., None]
    channels = band.shape[-1]
    if channels in (2, 4):  # gray + alpha, RGBA
        band = composite_on_black(band[..., :-1], band[..., -1])
    if channels <= 2:
        return np.repeat(band, 3, axis=-1)
    return band


def array_to_rgb(array: np.ndarray, source: str) -> np.ndarray:
    """``[H, W]`` or ``[H, W, C]`` (C in 1..4) array -> ``[H, W, 3]`` uint8 (module rules).

    A C-contiguous ``[H, W, 3]`` uint8 array comes back as is (no copy).
    """
    if array.ndim not in (2, 3) or (array.ndim == 3 and not 1 <= array.shape[-1] <= 4):
        raise UnreadableImageError(
            f"{source}: expected an image array of shape [H, W] or [H, W, C] with C in 1..4, got {array.shape}")
    height, width = array.shape[:2]
    if height < 2 or width < 2:
        raise UnreadableImageError(f"{source}: image is too small ({width}x{height}); it needs at least 2x2 pixels")
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3:
        return np.ascontiguousarray(array)
    out = np.empty((height, width, 3), dtype=np.uint8)
    step = band_rows(width, array.itemsize * (array.shape[2] if array.ndim == 3 else 1))
    for top in range(0, height, step):
        out[top: top + step] = _band_to_rgb(array[top: top + step], source)
    return out


def _pil_band(image: Image.Image, top: int, bottom: int) -> tuple[np.ndarray, bool]:
    """Rows ``top:bottom`` of a PIL image as an array in a mode numpy reads, and whether the
    values are 16-bit samples."""
    band = image.crop((0, top, image.width, bottom))
    if band.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(band), True
    if band.mode in ("LA", "RGBA") or (band.mode in ("L", "RGB", "1", "F") and "transparency" not in band.info):
        return np.asarray(band), False
    if "transparency" in band.info or "A" in band.getbands():  # P, PA, L / RGB + tRNS, La, RGBa, ...
        return np.asarray(band.convert("RGBA")), False
    return np.asarray(band.convert("RGB")), False  # CMYK, YCbCr, P without transparency, ...


def pil_to_rgb(image: Image.Image, source: str) -> np.ndarray:
    """A loaded PIL image (any mode) -> ``[H, W, 3]`` uint8, band by band (module rules)."""
    width, height = image.size
    if height < 2 or width < 2:
        raise UnreadableImageError(f"{source}: image is too small ({width}x{height}); it needs at least 2x2 pixels")
    out = np.empty((height, width, 3), dtype=np.uint8)
    step = band_rows(width, 16)  # PIL holds up to 4 bytes a pixel; conversions add a few copies
    for top in range(0, height, step):
        try:
            band, sixteen_bit = _pil_band(image, top, min(height, top + step))
        except (ValueError, OSError) as error:  # a mode PIL cannot turn into RGB (HSV, LAB, ...)
            raise UnreadableImageError(f"{source}: cannot convert PIL mode {image.mode} to RGB ({error}); "
                                       "convert the image to RGB first") from error
        out[top: top + step] = _band_to_rgb(band, source, sixteen_bit)
    return out
