"""The service's small parts on their own: upload decoding, the map PNG scale, metrics text, the
detector cache, the queue, include and path rules."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vandal.data.images import UnreadableImageError, decode_bytes, load_image
from vandal.outputs.visualize import map_image

from serve_helpers import bomb_png, png_bytes
from synthetic import texture


def test_decode_bytes_follows_the_file_rules_and_names_the_upload(tmp_path):
    image = texture(3, 40)
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    assert np.array_equal(decode_bytes(path.read_bytes(), "a.png"), load_image(path))
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: turned 90 degrees
    Image.fromarray(image[:, :20]).save(rotated, format="JPEG", exif=exif)
    assert decode_bytes(rotated.getvalue(), "r.jpg").shape == (20, 40, 3), "EXIF orientation applied"
    for data, name, words in ((b"", "empty.png", "empty"), (b"junk", "junk.png", "'junk.png'"),
                              (png_bytes(image)[:100], "cut.png", "cut.png"),
                              (bomb_png(1200), "bomb.png", "1,440,000 pixels")):
        with pytest.raises(UnreadableImageError) as caught:
            decode_bytes(data, name, max_pixels=1_000_000)
        assert str(caught.value).startswith(name) and words in str(caught.value)
        assert "BytesIO" not in str(caught.value)


def test_map_image_uses_the_overlay_scale():
    amap = np.array([[0.0, 0.25, 0.5], [1.0, 7.0, np.nan]], np.float32)
    assert map_image(amap, 0.5).tolist() == [[0, 64, 128], [255, 255, 255]]
    assert map_image(amap, 0.25)[0].tolist() == [0, 128, 255]
    tall = np.linspace(0, 1, 300_000, dtype=np.float32).reshape(3000, 100)  # several bands
    assert np.array_equal(map_image(tall, 0.5), (tall * 255).round().astype(np.uint8))


def test_metrics_text_format():
    from vandal.serve.metrics import BUCKETS, Metrics

    metrics = Metrics()
    metrics.observe("/models/{name}/predict", "POST", 200, 0.03)
    metrics.observe("/models/{name}/predict", "POST", 422, 7.0)
    metrics.observe('/we"ird', "GET", 404, 0.001)
    metrics.add_images(5)
    metrics.gauge("vandal_models_cached", "Detectors loaded.", lambda: 2)
    text = metrics.render()
    lines = text.splitlines()
    bucket = 'vandal_request_duration_seconds_bucket{endpoint="/models/{name}/predict",le="%s"} %d'
    assert bucket % ("0.025", 0) in lines and bucket % ("0.05", 1) in lines and bucket % ("10.0", 2) in lines
    assert bucket % ("+Inf", 2) in lines and len([x for x in lines if x.startswith("vandal_request_duration_seconds_"
                                                                                   "bucket{endpoint=\"/models")]) \
        == len(BUCKETS) + 1
    assert 'vandal_request_errors_total{endpoint="/models/{name}/predict",method="POST"} 1' in lines
    assert 'vandal_requests_total{endpoint="/we\\"ird",method="GET",status="404"} 1' in lines
    assert "vandal_images_scored_total 5" in lines and "vandal_models_cached 2" in lines
    assert "# TYPE vandal_models_cached gauge" in lines and text.endswith("\n")


def test_detector_cache_is_lru_and_keyed_by_the_bundle_version(tmp_path):
    from vandal.serve.cache import DetectorCache, bundle_stamp

    cache = DetectorCache(2)
    cache.put("a", ((1, 1, 1),), "A")
    cache.put("b", ((2, 2, 2),), "B")
    assert cache.get("a", ((1, 1, 1),)) == "A"  # a is now the most recent
    cache.put("c", ((3, 3, 3),), "C")
    assert "b" not in cache and len(cache) == 2
    assert cache.get("a", ((9, 9, 9),)) is None, "a rewritten bundle is not served from the cache"
    assert bundle_stamp(tmp_path) is None
    (tmp_path / "detector.json").write_text("{}")
    (tmp_path / "tensors.safetensors").write_bytes(b"x")
    first = bundle_stamp(tmp_path)
    (tmp_path / "tensors.safetensors").write_bytes(b"xy")
    assert first is not None and bundle_stamp(tmp_path) != first


def test_admission_counts_and_retry_after():
    from vandal.serve.queue import Admission, is_heavy

    admission = Admission(2)
    assert admission.enter() and admission.enter() and not admission.enter()
    assert admission.rejected == 1 and admission.retry_after() == 1
    for _ in range(20):
        admission.leave(12.3)
        admission.active += 1
    assert admission.retry_after() == 13
    assert is_heavy({"type": "http", "method": "POST", "path": "/models/x/predict"})
    assert is_heavy({"type": "http", "method": "POST", "path": "/models/x"})
    assert not is_heavy({"type": "http", "method": "GET", "path": "/models/x"})
    assert not is_heavy({"type": "http", "method": "POST", "path": "/metrics"})


def test_include_and_server_path_rules():
    from vandal.serve.encode import PNG_FIELDS, parse_include
    from vandal.serve.errors import ServiceError
    from vandal.serve.fit_options import looks_like_path

    assert parse_include(None) == PNG_FIELDS and parse_include("") == ()
    assert parse_include("overlay_png, mask_png,overlay_png") == ("overlay_png", "mask_png")
    with pytest.raises(ServiceError, match="heat"):
        parse_include("heat")
    for path in ("/etc", "~/x", "./x", "../x", "a/../../b", "C:\\weights", "\\\\server\\share", "a\x00b"):
        assert looks_like_path(path), path
    for name in ("efficientnet-lite2", "openai/clip-vit-large-patch14-336", "sam", "classical", ""):
        assert not looks_like_path(name), name


def test_validation_errors_are_one_line_naming_the_field():
    from vandal.serve.errors import validation_detail

    detail = validation_detail([{"loc": ("query", "image_threshold"), "msg": "Input should be greater than 0"},
                                {"loc": ("body", "files"), "msg": "Field required"}])
    assert detail == ("query parameter 'image_threshold': Input should be greater than 0; "
                      "field 'files': Field required")


@pytest.mark.parametrize("shape", [(1, 1), (1, 7, 3), (37, 53), (37, 53, 1), (20, 31, 3), (9, 4, 4)])
def test_png_bytes_round_trip_exactly(shape):
    from vandal.png import png_bytes

    array = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(array))))
    assert np.array_equal(decoded, array.reshape(shape[:2]) if len(shape) == 3 and shape[2] == 1 else array)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(array.astype(np.float32))
