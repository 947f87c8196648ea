import numpy as np
import pytest
from PIL import Image

from vandal.data.images import UnreadableImageError, load_image


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
