import numpy as np

import vandal.outputs.visualize as visualize
from vandal.outputs.visualize import colormap, mask_image, overlay


def _scene(height=37, width=29, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    anomaly_map = (rng.random((height, width)) * 1.5).astype(np.float32)
    return image, anomaly_map, anomaly_map > 0.7


def test_colormap_ends_and_nan_is_never_drawn_as_normal():
    colours = colormap(np.array([[0.0, 1.0, np.nan, -3.0, np.inf]]))
    assert colours[0, 0].tolist() == [48, 18, 59] and colours[0, 1].tolist() == [122, 4, 3]
    assert colours[0, 2].tolist() == colours[0, 1].tolist()  # NaN: the most anomalous colour
    assert colours[0, 3].tolist() == colours[0, 0].tolist() and colours[0, 4].tolist() == colours[0, 1].tolist()


def test_overlay_blends_and_outlines_the_mask():
    image = np.full((9, 9, 3), 100, dtype=np.uint8)
    anomaly_map = np.zeros((9, 9), dtype=np.float32)
    mask = np.zeros((9, 9), dtype=bool)
    mask[2:7, 2:7] = True
    out = overlay(image, anomaly_map, level=0.5, mask=mask)
    assert out[0, 0].tolist() == [74, 59, 80]  # (100 + colour of 0) / 2, rounded
    assert (out[2, 2:7] == 255).all() and (out[4, 4] != 255).all()  # outline white, inside blended


def test_overlay_in_bands_and_in_place_is_the_same_picture(monkeypatch):
    image, anomaly_map, mask = _scene()
    whole = overlay(image, anomaly_map, mask=mask)
    monkeypatch.setattr(visualize, "_BAND_PIXELS", 29 * 3)  # bands of 3 rows: outlines cross bands
    assert np.array_equal(overlay(image, anomaly_map, mask=mask), whole)
    target = image.copy()
    assert overlay(target, anomaly_map, mask=mask, out=target) is target
    assert np.array_equal(target, whole)
    assert np.array_equal(colormap(anomaly_map), visualize._LUT[visualize._indices(anomaly_map)])  # banded == one


def test_lookup_table_stays_within_one_level_of_the_exact_ramp():
    values = np.linspace(0, 1, 10007, dtype=np.float32)
    exact = visualize._ramp(values).astype(int)
    assert np.abs(colormap(values[None])[0].astype(int) - exact).max() <= 6  # 256 steps across the ramp
    assert colormap(np.array([[np.nan, -1.0, 2.0]], np.float32))[0].tolist() == [
        visualize._LUT[255].tolist(), visualize._LUT[0].tolist(), visualize._LUT[255].tolist()]


def test_mask_image_is_0_or_255():
    assert mask_image(np.array([[True, False]])).tolist() == [[255, 0]]
