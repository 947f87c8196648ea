"""Uploaded files: read within the per-file limit, decoded by the library's one decoder.

Every refusal names the file: empty, above ``--max-upload-mb``, corrupt or truncated, or above the
pixel limit (decompression bombs are refused from the header, before any pixel is decoded), or
past the per-request pixel budget (all files together, also from the headers).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..data.images import UnreadableImageError, decode_bytes
from .errors import ServiceError
from .settings import MB, ServeSettings


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave it and its bytes."""

    name: str
    data: bytes


def upload_name(filename: str | None, index: int) -> str:
    """The client's file name, for messages and results only (never used as a path)."""
    text = "".join(c for c in (filename or "") if c.isprintable()).strip()
    return text[:255] if text else f"<file #{index}>"


async def read_uploads(files: Sequence[Any], settings: ServeSettings, field: str = "files") -> list[Upload]:
    """Starlette ``UploadFile``s -> :class:`Upload` s, refusing empty and oversized files by name."""
    if not files:
        raise ServiceError(422, f"field {field!r}: upload at least one image")
    if len(files) > settings.max_files:
        raise ServiceError(413, f"field {field!r}: {len(files)} files in one request, above the limit of "
                                f"{settings.max_files}; send them in several requests")
    uploads = []
    limit = settings.max_upload_bytes
    for index, file in enumerate(files):
        name = upload_name(getattr(file, "filename", None), index)
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise ServiceError(413, f"{name}: larger than the limit of {limit / MB:g} MB per file "
                                    "(the server's --max-upload-mb)")
        if not data:
            raise ServiceError(422, f"{name}: file is empty (0 bytes)")
        uploads.append(Upload(name, data))
    return uploads


def header_pixels(data: bytes) -> int:
    """Pixels an image file declares in its header (0 when it has no readable header: decoding says why)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - any header Pillow cannot read is the decoder's to report, by name
        return 0


def decode_kept(uploads: Sequence[Upload], max_pixels: int | None, skip_unreadable: bool = False,
                max_request_pixels: int | None = None) -> tuple[list[tuple[Upload, np.ndarray]], list[dict[str, str]]]:
    """Decode each upload -> ``([(upload, [H, W, 3] uint8)], errors)``.

    An unreadable file is a 422 naming it, or, with ``skip_unreadable``, one ``{"file", "detail"}``
    entry in ``errors`` while the rest are decoded. The files' pixels together may not exceed
    ``max_request_pixels`` (read from the headers, before decoding): 413 naming the file that would.
    """
    images, errors, budget = [], [], 0
    for upload in uploads:
        if max_request_pixels is not None:
            budget += header_pixels(upload.data)
            if budget > max_request_pixels:
                raise ServiceError(413, f"{upload.name}: the files up to this one hold {budget:,} pixels, above the "
                                        f"limit of {max_request_pixels:,} per request (the server's "
                                        "--max-request-pixels); send fewer or smaller images per request")
        try:
            image = decode_bytes(upload.data, upload.name, max_pixels)
            if min(image.shape[:2]) < 2:
                raise UnreadableImageError(f"{upload.name}: image is too small ({image.shape[1]}x{image.shape[0]}); "
                                           "it needs at least 2x2 pixels")
            images.append((upload, image))
        except UnreadableImageError as error:
            message = str(error).replace("--skip-unreadable", "?skip_unreadable=true")
            if not skip_unreadable:
                raise ServiceError(422, message) from error
            errors.append({"file": upload.name, "detail": message})
    return images, errors


def decode_uploads(uploads: Sequence[Upload], max_pixels: int | None, skip_unreadable: bool = False,
                   max_request_pixels: int | None = None) -> tuple[list[tuple[str, np.ndarray]], list[dict[str, str]]]:
    """:func:`decode_kept` -> ``([(name, [H, W, 3] uint8)], errors)``."""
    kept, errors = decode_kept(uploads, max_pixels, skip_unreadable, max_request_pixels)
    return [(upload.name, image) for upload, image in kept], errors
