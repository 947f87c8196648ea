"""References from the operator's feedback: inspections reviewed ``good`` (confirmed false alarms)
whose kept images become a model's references. Unreviewed, ``defect``, unknown, other models'
inspections, and images no longer kept are refused by id, before anything changes."""

from __future__ import annotations

import json

import numpy as np

from ..data.images import UnreadableImageError, decode_bytes
from .db import records
from .errors import ServiceError
from .station import Station

MAX_IDS = 1000


def parse_ids(body: bytes) -> list[int]:
    try:
        document = json.loads(body or b"null")
    except (ValueError, RecursionError) as error:
        raise ServiceError(422, f"body: not valid JSON ({error})") from error
    ids = document.get("inspection_ids") if isinstance(document, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ServiceError(422, "field 'inspection_ids': give a non-empty list of inspection ids, e.g. "
                                '{"inspection_ids": [12, 15]}')
    if len(ids) > MAX_IDS:
        raise ServiceError(413, f"field 'inspection_ids': {len(ids)} ids, above the limit of {MAX_IDS} per request")
    return list(dict.fromkeys(ids))


def references_from_inspections(station: Station, model: str, body: bytes, max_pixels: int | None
                                ) -> list[np.ndarray]:
    """The JSON body ``{"inspection_ids": [...]}`` -> the decoded kept images, all reviewed good."""
    ids = parse_ids(body)
    with station.db.connect() as conn:
        found = records.verdicts(conn, ids)
    problems = []
    for inspection_id in ids:
        row = found.get(inspection_id)
        if row is None:
            problems.append(f"{inspection_id}: no such inspection")
        elif row["model"] != model:
            problems.append(f"{inspection_id}: an inspection of model {row['model']!r}")
        elif row["verdict"] != "good":
            problems.append(f"{inspection_id}: " + ("not reviewed" if row["verdict"] is None else
                                                    f"reviewed {row['verdict']}") + ", not good")
    if problems:
        raise ServiceError(422, "only inspections of this model reviewed good become references; refused: "
                                + "; ".join(problems[:20]))
    images = []
    for inspection_id in ids:
        row = found[inspection_id]
        data = station.images.get(row["sha256"])
        if data is None:
            raise ServiceError(409, f"inspection {inspection_id} ({row['file']}): its image is no longer kept "
                                    "(--keep-images); upload the file as a reference instead")
        try:
            images.append(decode_bytes(data, row["file"], max_pixels))
        except UnreadableImageError as error:
            raise ServiceError(409, f"inspection {inspection_id}: its kept image cannot be read ({error})") from error
    return images
