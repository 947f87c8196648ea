"""Decoding images of any kind into RGB uint8 arrays, with errors that name the file.

Boundaries accept paths, PIL images and numpy arrays; everything past here is ``[H, W, 3]`` uint8.

Rules, the same for every kind of input:

- Pixels: the dtype decides the scale (uint8 as is, uint16 / 16-bit files scaled from 0..65535,
  floats must lie in [0, 1]); alpha is composited on black; see :mod:`vandal.data.pixels`.
- Size: images above ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, 100 megapixels) are
  refused from the file header, before any pixel is decoded, so a decompression bomb (a 30000 x
  30000 1-bit PNG is 109 KB on disk) costs no memory. Raise the limit with ``max_pixels=`` (CLI:
  ``--max-pixels``). Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``) is left as the user set it.
- Orientation: the EXIF orientation tag is applied, so maps match the image as viewers show it.
- Frames: animated GIF / PNG / WebP and multi-page TIFF use their first frame; a warning
  (:class:`MultiFrameWarning`) says so once per process and format, naming the file.
- Anything that cannot be decoded (corrupt, truncated, empty, too large, unsupported values)
  raises :class:`UnreadableImageError` naming the file and the fix; non-image Python objects raise
  ``TypeError``.
"""

from __future__ import annotations

import io
import os
import re
import struct
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .pixels import UnreadableImageError, array_to_rgb, pil_to_rgb

ImageInput = str | os.PathLike | Image.Image | np.ndarray

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
DEFAULT_MAX_PIXELS = 100_000_000  # 10000 x 10000: about 1.6 GB of working memory at 16 bytes a pixel

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "ImageInput", "MultiFrameWarning", "UnreadableImageError",
           "as_image_list", "decode_ahead", "describe", "is_image_file", "load_image"]


class MultiFrameWarning(UserWarning):
    """An animated or multi-page image was read; only its first frame is scored."""


_warned_formats: set[str] = set()
_warned_lock = threading.Lock()


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _check_pixels(width: int, height: int, max_pixels: int | None, source: str) -> None:
    if width < 2 or height < 2:  # from the header, so that every decoder (libpng's too) names the file
        raise UnreadableImageError(f"{source}: image is too small ({width}x{height}); it needs at least 2x2 "
                                   "pixels: replace it, or pass --skip-unreadable to skip such files")
    if max_pixels is not None and width * height > max_pixels:
        raise UnreadableImageError(
            f"{source}: image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} (a guard against decompression bombs and out-of-memory). If the image is "
            f"genuine, raise the limit: --max-pixels {width * height} (Python: max_pixels=), or "
            "pass --skip-unreadable to skip such files")


def _warn_first_frame(image: Image.Image, source: str) -> None:
    """Once per process and format: say that only the first frame of a multi-frame image is used."""
    if not getattr(image, "is_animated", False):
        return
    kind = image.format or "multi-frame"
    with _warned_lock:
        if kind in _warned_formats:
            return
        _warned_formats.add(kind)
    warnings.warn(f"{source}: {kind} image with several frames/pages; vandal scores the first one only "
                  f"(this warning is shown once for all {kind} files)", MultiFrameWarning, stacklevel=4)


def _upright(image: Image.Image) -> Image.Image:
    """The image as viewers show it: its EXIF orientation applied (the same image when upright)."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def _pil_input(image: Image.Image, source: str, max_pixels: int | None) -> np.ndarray:
    _check_pixels(*image.size, max_pixels, source)
    _warn_first_frame(image, source)
    image.load()
    return pil_to_rgb(_upright(image), source)


_PILLOW_CHUNKS = (b"eXIf", b"tRNS", b"Raw profile type exif", b"XML:com.adobe.xmp")


def _plain_png(opened: Image.Image, path: Path | io.BytesIO) -> np.ndarray | None:
    """An 8-bit RGB PNG without transparency or EXIF (camera exports, MVTec AD), decoded by libpng
    through imagecodecs; None for anything else, or when libpng refuses the file (Pillow then decodes
    it and reports the error). Pillow's PNG decoder is the bottleneck of a predict's decoding
    (``benchmarks/bench_speed.py --parts``; docs/performance.md), and imagecodecs
    releases the GIL as Pillow does (pyspng holds it, which stalls the thread that runs the
    backbone). The pixels are identical (tests/test_images.py)."""
    if (opened.format != "PNG" or opened.mode != "RGB" or "transparency" in opened.info
            or getattr(opened, "is_animated", False)):
        return None
    data = path.getvalue() if isinstance(path, io.BytesIO) else Path(path).read_bytes()
    # IHDR: bit depth 8, colour type 2 (truecolour; Pillow also calls 16-bit files "RGB"), not
    # interlaced (libpng warns on stderr for those). Chunks Pillow acts on at load, wherever they lie
    # (orientation from eXIf, an ImageMagick EXIF profile or XMP; transparency), leave it to Pillow.
    if len(data) < 29 or data[24] != 8 or data[25] != 2 or data[28] != 0 or any(
            marker in data for marker in _PILLOW_CHUNKS):
        return None
    try:
        import imagecodecs

        pixels = imagecodecs.png_decode(data)
    except Exception:  # noqa: BLE001 - any refusal: Pillow decides and names the error
        return None
    if pixels.dtype != np.uint8 or pixels.shape != (opened.size[1], opened.size[0], 3):
        return None
    return pixels


def _decode_file(path: Path | io.BytesIO, max_pixels: int | None, source: str | None = None) -> np.ndarray:
    """Open lazily (header only), check the size, then decode the first frame upright."""
    source = str(path) if source is None else source
    with Image.open(path) as opened:
        width, height = opened.size
        _check_pixels(width, height, max_pixels, source)  # before any pixel is decoded
        fast = _plain_png(opened, path)
        if fast is not None:
            return fast
        _warn_first_frame(opened, source)
        opened.load()  # decode now, so truncation surfaces here and not later
        upright = _upright(opened)
        if upright is not opened:
            opened.close()  # free the stored orientation's pixels before converting the turned copy
        return pil_to_rgb(upright, source)


def _bomb_message(source: str, error: Exception, max_pixels: int | None) -> str:
    """Pillow's own guard refused the header: the image is above ``2 * PIL.Image.MAX_IMAGE_PIXELS``."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    limit = "no vandal limit" if max_pixels is None else f"vandal's limit is {max_pixels:,}"
    return (f"{source}: image of {pixels} refused before decoding (a guard against decompression bombs; "
            f"{limit}, Pillow refuses above 2 x PIL.Image.MAX_IMAGE_PIXELS = {2 * (Image.MAX_IMAGE_PIXELS or 0):,}). "
            "If the image is genuine, raise the limit with --max-pixels (Python: max_pixels=, and set "
            "PIL.Image.MAX_IMAGE_PIXELS = None in your program), or pass --skip-unreadable to skip such files")


# Pillow's plugins report malformed files with all of these, depending on where they break (found by
# tests/test_image_fuzz.py); any of them means "not a decodable image".
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
                  KeyError, struct.error, ZeroDivisionError, OverflowError)


def _decode(decode, source: str, max_pixels: int | None) -> np.ndarray:
    """Run ``decode()``; every way a malformed or oversized image can fail -> UnreadableImageError."""
    try:
        return decode()
    except UnreadableImageError:
        raise
    except Image.DecompressionBombError as error:
        raise UnreadableImageError(_bomb_message(source, error, max_pixels)) from error
    except MemoryError as error:
        raise UnreadableImageError(f"{source}: not enough memory to decode this image; lower --max-pixels "
                                   "or pass --skip-unreadable") from error
    except _DECODE_ERRORS as error:
        raise UnreadableImageError(
            f"{source}: cannot decode image ({type(error).__name__}: {error}); the file is corrupt, truncated "
            "or not an image. Replace it, or pass --skip-unreadable to skip such files"
        ) from error


def load_image(image: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported input -> ``[H, W, 3]`` uint8 RGB, following the module's rules.

    ``max_pixels``: refuse images with more pixels (``None``: no limit). Corrupt, truncated,
    empty and oversized files raise :class:`UnreadableImageError` naming the file.
    """
    if isinstance(image, np.ndarray):
        if image.ndim >= 2:
            _check_pixels(image.shape[1], image.shape[0], max_pixels, "array input")
        return array_to_rgb(image, "array input")
    if isinstance(image, Image.Image):
        return _decode(lambda: _pil_input(image, "PIL image input", max_pixels), "PIL image input", max_pixels)
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(f"expected a path, a PIL image or a numpy array, got {type(image).__name__}")
    path = Path(image)
    if not path.is_file():
        raise UnreadableImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UnreadableImageError(f"{path}: file is empty (0 bytes); replace it or pass --skip-unreadable")
    return _decode(lambda: _decode_file(path, max_pixels), str(path), max_pixels)


class _NamedBytes(io.BytesIO):
    """An in-memory file that Pillow's messages call by its name (not ``<_io.BytesIO object at ...>``)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self._name = name

    def __repr__(self) -> str:
        return repr(self._name)


def decode_bytes(data: bytes, source: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image file's bytes (read from object storage, or an upload) -> ``[H, W, 3]`` uint8 RGB, decoded
    as :func:`load_image` decodes the file; errors name ``source``."""
    if not data:
        raise UnreadableImageError(f"{source}: file is empty (0 bytes); replace it or pass --skip-unreadable")
    return _decode(lambda: _decode_file(_NamedBytes(data, source), max_pixels, source), source, max_pixels)


def describe(image: ImageInput, index: int) -> str:
    """A short name for an input, for CSV rows and messages."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__} #{index}>"


def decode_ahead(inputs: Iterable[ImageInput], max_pixels: int | None = DEFAULT_MAX_PIXELS, ahead: int = 1,
                 workers: int = 1, prepare: Callable[[np.ndarray], object] | None = None) -> Iterator[tuple]:
    """Decode inputs in background threads, ``ahead`` images ahead of the consumer.

    The decoders release the GIL, so the next files decode while the backbone runs on the current
    one, on a core it leaves spare (``vandal.detector.decode_workers``); ``workers=0`` decodes in the
    caller's thread instead, when there is none.
    Yields ``(input, array or the error)`` in input order (``max_pixels`` as in :func:`load_image`),
    or ``(input, (array, prepare(array)) or the error)`` when ``prepare`` is given: work that
    follows decoding (resizing to the backbone's input) then runs in the same threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    def decode(item: ImageInput):
        try:
            image = load_image(item, max_pixels)
        except UnreadableImageError as error:
            return error
        return image if prepare is None else (image, prepare(image))

    if workers == 0:  # in the caller's thread, one at a time (no spare core to decode ahead on)
        yield from ((item, decode(item)) for item in inputs)
        return
    items = iter(inputs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vandal-decode") as pool:
        def submit_next():
            for item in items:
                return item, pool.submit(decode, item)
            return None

        queue: deque = deque()
        while True:
            while len(queue) < ahead + 1:  # queue the next decodes before waiting on this one
                pending = submit_next()
                if pending is None:
                    break
                queue.append(pending)
            if not queue:
                return
            item, future = queue.popleft()
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
