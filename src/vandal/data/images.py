"""Decoding images of any kind into RGB uint8 arrays, with errors that name the file.

Boundaries accept paths, PIL images and numpy arrays; everything past here is ``[H, W, 3]`` uint8.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageInput = str | os.PathLike | Image.Image | np.ndarray

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class UnreadableImageError(ValueError):
    """An input that is not a decodable image; the message names the file and what to do."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise UnreadableImageError(f"{source}: image holds NaN or infinite values")
        # Floats are taken as [0, 1] unless they clearly use the 8-bit range.
        scale = 1.0 if array.max(initial=0.0) <= 1.0 else 1.0 / 255.0
        return np.clip(np.rint(array * scale * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        # 16-bit (and wider) images: scale their full range down to 8 bits.
        top = 65535.0 if array.max(initial=0) > 255 else 255.0
        return np.clip(np.rint(array.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    raise UnreadableImageError(f"{source}: unsupported pixel type {array.dtype}")


def _array_to_rgb(array: np.ndarray, source: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(_to_uint8(array, source)[..., None], 3, axis=-1)
    elif array.ndim == 3 and array.shape[-1] in (3, 4):
        array = _to_uint8(array[..., :3], source)
    else:
        raise UnreadableImageError(
            f"{source}: expected an image array of shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], "
            f"got {array.shape}"
        )
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise UnreadableImageError(f"{source}: image is too small ({array.shape[1]}x{array.shape[0]})")
    return np.ascontiguousarray(array)


def _pil_to_rgb(image: Image.Image, source: str) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _array_to_rgb(np.asarray(image), source)
    if image.mode == "RGBA" or (image.mode == "P" and "transparency" in image.info) or image.mode == "LA":
        # Composite on black so transparent padding never reads as texture.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return _array_to_rgb(np.asarray(image.convert("RGB")), source)


def load_image(image: ImageInput) -> np.ndarray:
    """Any supported input -> ``[H, W, 3]`` uint8 RGB.

    Grayscale, RGBA, palette and 16-bit images are converted. Corrupt, truncated and empty files
    raise :class:`UnreadableImageError` naming the file.
    """
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, "array input")
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, "PIL image input")
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(f"expected a path, a PIL image or a numpy array, got {type(image).__name__}")
    path = Path(image)
    if not path.is_file():
        raise UnreadableImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UnreadableImageError(f"{path}: file is empty (0 bytes); replace it or pass --skip-unreadable")
    try:
        with Image.open(path) as opened:
            opened.load()  # decode now, so truncation surfaces here and not later
            return _pil_to_rgb(opened, str(path))
    except UnreadableImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UnreadableImageError(
            f"{path}: cannot decode image ({error}); the file is corrupt, truncated or not an image. "
            "Replace it, or pass --skip-unreadable to skip such files"
        ) from error


def describe(image: ImageInput, index: int) -> str:
    """A short name for an input, for CSV rows and messages."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__} #{index}>"


def decode_ahead(inputs: Iterable[ImageInput]) -> Iterator[tuple[ImageInput, np.ndarray | UnreadableImageError]]:
    """Decode inputs in a background thread, one ahead of the consumer.

    PIL releases the GIL while decoding, so the next file decodes while the backbone runs on the
    current one: decoding a 900 x 900 PNG takes about 20 ms, two thirds of an EfficientNet-Lite2
    forward at 320 on 2 cores, and would otherwise add straight to predict time.
    Yields ``(input, array or the error)`` in input order.
    """
    from concurrent.futures import ThreadPoolExecutor

    def decode(item: ImageInput) -> np.ndarray | UnreadableImageError:
        try:
            return load_image(item)
        except UnreadableImageError as error:
            return error

    items = iter(inputs)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vandal-decode") as pool:
        def submit_next():
            for item in items:
                return item, pool.submit(decode, item)
            return None

        pending = submit_next()
        while pending is not None:
            item, future = pending
            pending = submit_next()  # queue the next decode before waiting on this one
            yield item, future.result()


def as_image_list(images: Iterable[ImageInput] | ImageInput | None) -> list:
    """One input or many -> a list of inputs.

    A path, a PIL image or a 2-D / 3-D array is one image; a 4-D array ``[N, H, W, C]`` is N images.
    """
    if images is None:
        return []
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    return list(images)
