import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, PngImagePlugin

from vandal.data import images, pixels
from vandal.data.datasets import list_images
from vandal.data.images import (
    DEFAULT_MAX_PIXELS,
    MultiFrameWarning,
    UnreadableImageError,
    decode_ahead,
    load_image,
)


def save(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_rgb_path_pil_and_array_agree(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    path = save(tmp_path / "a.png", rgb)
    assert np.array_equal(load_image(path), rgb)
    assert np.array_equal(load_image(str(path)), rgb)
    assert np.array_equal(load_image(Image.fromarray(rgb)), rgb)
    assert np.array_equal(load_image(rgb), rgb)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(600, dtype=np.uint8).reshape(20, 30)
    out = load_image(save(tmp_path / "g.png", gray))
    assert out.shape == (20, 30, 3) and np.array_equal(out[..., 0], gray) and np.array_equal(out[..., 2], gray)


def test_rgba_composited_on_black(tmp_path):
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:5, ..., 3] = 255  # top half opaque red, bottom half transparent
    out = load_image(save(tmp_path / "a.png", rgba))
    assert out.shape == (10, 10, 3)
    assert (out[:5, :, 0] == 200).all() and (out[5:] == 0).all()


def test_palette_image(tmp_path):
    image = Image.fromarray(np.full((8, 8, 3), (10, 200, 30), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)
    image.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert out.shape == (8, 8, 3) and abs(int(out[0, 0, 1]) - 200) <= 2


def test_sixteen_bit_scaled_to_eight(tmp_path):
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(deep).save(tmp_path / "d.png")
    out = load_image(tmp_path / "d.png")
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    assert out[7, 7, 0] == round(63000 * 255 / 65535) and out[0, 0, 0] == 0


def test_float_array_in_unit_range():
    out = load_image(np.full((4, 4, 3), 0.5, dtype=np.float32))
    assert out.dtype == np.uint8 and out[0, 0, 0] == 128


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_unreadable_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    if content is None:  # truncated: a real PNG cut in half
        save(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        data = (tmp_path / "ok.png").read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(UnreadableImageError, match="broken.png"):
        load_image(path)


def test_missing_file_and_bad_types(tmp_path):
    with pytest.raises(UnreadableImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(TypeError):
        load_image(42)
    with pytest.raises(UnreadableImageError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5)))


# --------------------------------------------------------------------------- size limit (bombs)

def _png_header(path, width, height, rows=4):
    """A 1-bit grayscale PNG whose header claims width x height, holding only a few rows of data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (1 + (width + 7) // 8) * rows)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data))
    return path


def test_decompression_bomb_is_unreadable(tmp_path):
    # The 30000 x 30000 1-bit PNG of the issue: Pillow itself refuses its header (above 2 x its limit).
    bomb = _png_header(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(UnreadableImageError, match=r"bomb\.png.*900,000,000 pixels.*--max-pixels"):
        load_image(bomb)
    # 12000 x 12000 is under Pillow's error level (it only warns): vandal's own limit refuses it.
    big = _png_header(tmp_path / "big.png", 12000, 12000)
    with pytest.warns(Image.DecompressionBombWarning), \
            pytest.raises(UnreadableImageError, match=r"big\.png.*12000x12000.*--max-pixels 144000000"):
        load_image(big)
    assert DEFAULT_MAX_PIXELS == 100_000_000


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    # A truncated file: decoding would fail, so the limit's message proves no pixel was decoded first.
    save(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="above the limit of 1,000"):
        load_image(tmp_path / "cut.png", max_pixels=1000)
    with pytest.raises(UnreadableImageError, match="cannot decode"):
        load_image(tmp_path / "cut.png")


def test_pixel_limit_is_configurable_for_every_input(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (50, 100, 3), dtype=np.uint8)
    path = save(tmp_path / "a.png", rgb)
    before = Image.MAX_IMAGE_PIXELS
    for image in (path, Image.fromarray(rgb), rgb):
        with pytest.raises(UnreadableImageError, match="--max-pixels 5000"):
            load_image(image, max_pixels=4999)
        assert np.array_equal(load_image(image, max_pixels=5000), rgb)
        assert np.array_equal(load_image(image, max_pixels=None), rgb)
    assert before == Image.MAX_IMAGE_PIXELS  # Pillow's global guard is never touched


def test_decode_ahead_reports_oversized_images_as_unreadable(tmp_path):
    rgb = np.zeros((50, 100, 3), dtype=np.uint8)
    small = save(tmp_path / "small.png", rgb[:10, :10])
    large = save(tmp_path / "large.png", rgb)
    out = list(decode_ahead([large, small], max_pixels=1000))
    assert isinstance(out[0][1], UnreadableImageError) and "large.png" in str(out[0][1])
    assert out[1][1].shape == (10, 10, 3)


# --------------------------------------------------------------------------- orientation, frames

def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((160, 320, 3), dtype=np.uint8)
    stored[:, :160] = (255, 0, 0)  # left half red, right half blue, as stored
    stored[:, 160:] = (0, 0, 255)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    for image in (tmp_path / "turned.jpg", Image.open(tmp_path / "turned.jpg")):
        out = load_image(image)
        assert out.shape == (320, 160, 3)  # as displayed: 160 wide, 320 high
        # Turned clockwise, the stored left half (red) is on top and the right half (blue) below.
        assert out[:150, :, 0].mean() > 200 and out[170:, :, 2].mean() > 200


def _frames(*values):
    return [Image.fromarray(np.full((8, 8, 3), v, dtype=np.uint8)) for v in values]


def test_gif_is_an_image_and_multi_frame_files_use_the_first_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_warned_formats", set())
    for name in ("a.gif", "b.gif"):
        first, *rest = _frames(10, 120, 250)
        first.save(tmp_path / name, save_all=True, append_images=rest)
    _frames(30)[0].save(tmp_path / "still.gif")
    first, *rest = _frames(40, 200)
    first.save(tmp_path / "pages.tif", save_all=True, append_images=rest)
    assert [p.name for p in list_images(tmp_path)[0]] == ["a.gif", "b.gif", "pages.tif", "still.gif"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(tmp_path / "a.gif")[0, 0, 0] == 10
        assert load_image(tmp_path / "b.gif")[0, 0, 0] == 10  # same format: not said again
        assert load_image(tmp_path / "still.gif")[0, 0, 0] == 30  # one frame: nothing to say
        assert load_image(tmp_path / "pages.tif")[0, 0, 0] == 40
    said = [str(w.message) for w in caught if issubclass(w.category, MultiFrameWarning)]
    assert len(said) == 2 and "a.gif" in said[0] and "GIF" in said[0] and "pages.tif" in said[1]


# --------------------------------------------------------------------------- one pixel rule

def test_float_values_have_one_meaning_whatever_the_content():
    # 0.5 is mid-grey in every image: no content-dependent guess between [0, 1] and [0, 255].
    assert load_image(np.full((4, 4, 3), 0.5, dtype=np.float32))[0, 0, 0] == 128
    dark_8bit_range = np.full((4, 4, 3), 0.5)
    dark_8bit_range[0, 0] = 200.0
    with pytest.raises(UnreadableImageError, match=r"\[0, 1\].*uint8.*image / 255"):
        load_image(dark_8bit_range)
    with pytest.raises(UnreadableImageError, match="NaN"):
        load_image(np.full((4, 4), np.nan))
    assert load_image(np.full((4, 4), 1.0 + 1e-7))[0, 0, 0] == 255  # rounding slack is fine


def test_integer_arrays_scale_by_dtype():
    assert load_image(np.full((4, 4), 200, dtype=np.int64))[0, 0, 0] == 200
    assert load_image(np.full((4, 4), 200, dtype=np.uint16))[0, 0, 0] == 1  # 16-bit: 200/65535 is dark
    with pytest.raises(UnreadableImageError, match="0..255.*uint16"):
        load_image(np.full((4, 4), 300, dtype=np.int32))


def test_alpha_is_composited_on_black_for_arrays_and_pil_alike(tmp_path):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    expected = np.floor(rgba[..., :3] * (rgba[..., 3:] / 255.0) + 0.5).astype(np.uint8)
    path = save(tmp_path / "t.png", rgba)
    for image in (rgba, Image.fromarray(rgba, "RGBA"), path, rgba / 255.0):
        assert np.array_equal(load_image(image), expected)
    gray_alpha = rgba[..., [0, 3]]
    expected_gray = np.repeat(expected[..., :1], 3, axis=-1)
    assert np.array_equal(load_image(gray_alpha), expected_gray)
    assert np.array_equal(load_image(Image.fromarray(gray_alpha, "LA")), expected_gray)


def test_large_images_convert_in_bands(monkeypatch):
    # Bands of 3 rows: the result must be the same as one band.
    rgba = np.random.default_rng(4).integers(0, 256, (20, 9, 4), dtype=np.uint8)
    whole = load_image(rgba)
    monkeypatch.setattr(pixels, "BAND_BYTES", 9 * 4 * 3)
    assert np.array_equal(load_image(rgba), whole)
    assert np.array_equal(load_image(Image.fromarray(rgba, "RGBA").convert("P")), load_image(
        np.asarray(Image.fromarray(rgba, "RGBA").convert("P").convert("RGB"))))


def test_skip_unreadable_lists_a_decompression_bomb_with_its_reason(tmp_path, fitted_detector):
    import csv

    from vandal.outputs.run import write_outputs

    bomb = _png_header(tmp_path / "bomb.png", 30000, 30000)
    good = save(tmp_path / "good.png", np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    report = write_outputs(fitted_detector, [bomb, good], tmp_path / "out", skip_unreadable=True)
    assert report.skipped == [str(bomb)] and list(report.scores) == [str(good)]
    with open(tmp_path / "out" / "skipped.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["path"] == str(bomb) and "--max-pixels" in row["reason"]
    with pytest.raises(UnreadableImageError, match="bomb.png"):
        write_outputs(fitted_detector, [bomb, good], tmp_path / "stop")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """The PNG ``data`` with a chunk inserted right after IHDR (8-byte signature + 25-byte IHDR)."""
    return data[:33] + _png_chunk(kind, body) + data[33:]


def test_plain_rgb_pngs_take_libpng_with_pixels_identical_to_pillow(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 255, 97 * 61 * 3).reshape(61, 97, 3).astype(np.uint8)
    noisy = rng.integers(0, 256, (61, 97, 3), dtype=np.uint8)
    variants = {}
    for name, array, options in (("ramp", ramp, {}), ("noise", noisy, {"compress_level": 9}),
                                 ("fast", noisy, {"compress_level": 1})):
        Image.fromarray(array).save(tmp_path / f"{name}.png", **options)
        variants[name] = array
    gamma = _with_chunk((tmp_path / "noise.png").read_bytes(), b"gAMA", struct.pack(">I", 45455))
    (tmp_path / "gamma.png").write_bytes(gamma)  # Pillow ignores gamma; libpng must too
    variants["gamma"] = noisy
    calls = []
    real = images._plain_png
    monkeypatch.setattr(images, "_plain_png", lambda *a: calls.append(real(*a) is not None) or real(*a))
    for name, array in variants.items():
        path = tmp_path / f"{name}.png"
        with Image.open(path) as opened:
            by_pillow = np.asarray(opened.convert("RGB"))
        assert np.array_equal(by_pillow, array), name
        assert np.array_equal(load_image(path), array), name
        assert np.array_equal(images.decode_bytes(path.read_bytes(), name), array), name
    assert calls and all(calls), "every plain 8-bit RGB PNG should take the libpng path"


def test_other_pngs_stay_with_pillow(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    plain = (tmp_path / "rgb.png").read_bytes()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 3
    Image.fromarray(rgb).save(tmp_path / "exif.png", exif=exif)
    (tmp_path / "trns.png").write_bytes(_with_chunk(plain, b"tRNS", struct.pack(">HHH", 0, 0, 0)))
    late = plain[:-12] + _png_chunk(b"tRNS", struct.pack(">HHH", 0, 0, 0)) + plain[-12:]  # after IDAT
    (tmp_path / "late-trns.png").write_bytes(late)
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    header = bytearray(plain[:33])
    header[28] = 1  # Adam7 (header only: whether the fast path takes it is decided there; libpng warns on those)
    header[29:33] = struct.pack(">I", zlib.crc32(bytes(header[12:29])))
    (tmp_path / "interlaced.png").write_bytes(bytes(header) + plain[33:])
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    Image.fromarray(rgb).save(tmp_path / "xmp.png", pnginfo=info)
    for name in ("exif.png", "trns.png", "late-trns.png", "gray.png", "interlaced.png", "xmp.png"):
        with Image.open(tmp_path / name) as opened:
            assert images._plain_png(opened, tmp_path / name) is None, name
    assert np.array_equal(load_image(tmp_path / "exif.png"), rgb[::-1, ::-1])  # the orientation still applies
    assert load_image(tmp_path / "xmp.png").shape == (7, 9, 3)  # XMP orientation 6: turned, as Pillow shows it
    with Image.open(tmp_path / "rgb.png") as opened:
        assert np.array_equal(images._plain_png(opened, tmp_path / "rgb.png"), rgb)


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_decode_ahead_keeps_the_order_and_the_errors_inline_or_threaded(tmp_path, workers):
    arrays = [np.full((6, 5, 3), v, dtype=np.uint8) for v in (10, 20, 30)]
    paths = [save(tmp_path / f"{i}.png", a) for i, a in enumerate(arrays)]
    (tmp_path / "bad.png").write_bytes(b"not a png")
    inputs = [paths[0], tmp_path / "bad.png", paths[1], arrays[2]]
    out = list(decode_ahead(inputs, workers=workers, ahead=2, prepare=lambda a: int(a[0, 0, 0])))
    assert [item for item, _ in out] == inputs
    assert isinstance(out[1][1], UnreadableImageError)
    assert [result[1] for _, result in out if not isinstance(result, Exception)] == [10, 20, 30]


def test_decode_workers_leave_the_cores_to_the_backbone(monkeypatch):
    import os

    import torch

    from vandal.detector import decode_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert decode_workers("cpu") == 0  # no spare core: decoding in turn is faster (measured)
    assert decode_workers("cuda") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert decode_workers("cpu") == 1 and decode_workers("cuda") == 8
