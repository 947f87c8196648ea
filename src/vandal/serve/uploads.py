"""Uploaded files: read within the per-file limit, decoded by the library's one decoder.

Every refusal names the file: empty, above ``--max-upload-mb``, corrupt or truncated, or above the
pixel limit (decompression bombs are refused from the header, before any pixel is decoded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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


def decode_uploads(uploads: Sequence[Upload], max_pixels: int | None, skip_unreadable: bool = False
                   ) -> tuple[list[tuple[str, np.ndarray]], list[dict[str, str]]]:
    """Decode each upload -> ``([(name, [H, W, 3] uint8)], errors)``.

    An unreadable file is a 422 naming it, or, with ``skip_unreadable``, one ``{"file", "detail"}``
    entry in ``errors`` while the rest are decoded.
    """
    images, errors = [], []
    for upload in uploads:
        try:
            images.append((upload.name, decode_bytes(upload.data, upload.name, max_pixels)))
        except UnreadableImageError as error:
            message = str(error).replace("--skip-unreadable", "?skip_unreadable=true")
            if not skip_unreadable:
                raise ServiceError(422, message) from error
            errors.append({"file": upload.name, "detail": message})
    return images, errors
