"""Fuzzing the image decoder: whatever comes in, load_image ends in a decoded ``[H, W, 3]`` uint8 image
or an UnreadableImageError (TypeError for Python objects that are not images), never anything else."""

from __future__ import annotations

import functools
import io
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import ExifTags, Image

from vandal.data.images import IMAGE_EXTENSIONS, UnreadableImageError, load_image


# Each fuzzer is sized to what it finds: over three runs of 120 draws, counting the kinds of outcome
# (decoded, or each distinct UnreadableImageError message), random bytes showed every kind by draw 2,
# truncated files by draw 34, corrupted files and random arrays still found new kinds at draws 70 and 103.
def fuzz(examples: int):
    """Hypothesis settings for ``examples`` draws (``FUZZ_EXAMPLES`` overrides, for a deep run)."""
    return settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", examples)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def real_files() -> dict[str, bytes]:
    """Small valid files of every accepted format (and some awkward modes): the fuzzing seeds."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    frames = [Image.fromarray(np.full((6, 5, 3), v, dtype=np.uint8)) for v in (10, 200)]
    cases = {
        "rgb.png": (Image.fromarray(rgb), {}),
        "rgba.png": (Image.fromarray(rng.integers(0, 256, (9, 12, 4), dtype=np.uint8)), {}),
        "deep.png": (Image.fromarray(rng.integers(0, 65535, (7, 8), dtype=np.uint16)), {}),
        "palette.png": (Image.fromarray(rgb).convert("P"), {}),
        "turned.jpg": (Image.fromarray(rgb), {"exif": exif}),
        "gray.jpg": (Image.fromarray(rgb[..., 0]), {}),
        "pages.tif": (frames[0], {"save_all": True, "append_images": frames[1:]}),
        "float.tif": (Image.fromarray(rng.random((6, 7), dtype=np.float32)), {}),
        "anim.gif": (frames[0], {"save_all": True, "append_images": frames[1:]}),
        "rgb.bmp": (Image.fromarray(rgb), {}),
        "rgb.webp": (Image.fromarray(rgb), {}),
    }
    out = {}
    for name, (image, options) in cases.items():
        buffer = io.BytesIO()
        image.save(buffer, format=Image.registered_extensions()[os.path.splitext(name)[1]], **options)
        out[name] = buffer.getvalue()
    return out


def _decode_bytes(data: bytes, suffix: str):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzzed" + suffix)
        with open(path, "wb") as handle:
            handle.write(data)
        return _outcome(path)


def _outcome(image):
    """Decode; return the array, or the UnreadableImageError. Any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multi-frame notices and Pillow's own warnings are fine here
        try:
            out = load_image(image)
        except UnreadableImageError as error:
            return error
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3 and out.shape[0] >= 2 and out.shape[1] >= 2
    return out


def test_every_seed_file_decodes():
    for name, data in real_files().items():
        assert isinstance(_decode_bytes(data, os.path.splitext(name)[1]), np.ndarray), name


@fuzz(25)
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(IMAGE_EXTENSIONS))
def test_random_bytes(data, suffix):
    _decode_bytes(data, suffix)


@fuzz(60)
@given(name=st.sampled_from(sorted(real_files())), cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files(name, cut):
    data = real_files()[name][: int(len(real_files()[name]) * cut)]
    out = _decode_bytes(data, os.path.splitext(name)[1])
    assert isinstance(out, (np.ndarray, UnreadableImageError))
    try:  # the same bytes opened lazily by the caller and handed over as a PIL image
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opened = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 (the caller's own open failing is not load_image's business)
        return
    _outcome(opened)


@fuzz(120)
@given(name=st.sampled_from(sorted(real_files())),
       edits=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_files(name, edits):
    data = bytearray(real_files()[name])
    for where, value in edits:  # overwrite bytes anywhere, the header included
        data[int(len(data) * where)] = value
    _decode_bytes(bytes(data), os.path.splitext(name)[1])


DTYPES = st.sampled_from([np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32, np.float16,
                          np.float32, np.float64, np.bool_, np.complex64, ">u2", "<f8", "U1", "M8[s]"])


@fuzz(120)
@given(array=hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)))
def test_random_arrays(array):
    out = _outcome(array)
    if isinstance(out, np.ndarray):
        assert out.shape[:2] == array.shape[:2]


@pytest.mark.parametrize("thing", [None, 42, 1.5, b"\x89PNG", ["a.png"], {"path": "a.png"}, object()])
def test_non_images_are_type_errors(thing):
    with pytest.raises(TypeError, match="path, a PIL image or a numpy array"):
        load_image(thing)


def test_pil_images_of_unusual_modes():
    for mode in ("1", "L", "P", "I", "F", "LA", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV", "LAB", "I;16"):
        image = Image.new(mode, (5, 4))
        assert isinstance(_outcome(image), (np.ndarray, UnreadableImageError)), mode
