import numpy as np
import pytest

from vandal.data.synthetic_anomalies import KINDS, blob_mask, perlin_noise, pink_noise, synthetic_anomaly

from synthetic import texture


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_only_its_mask(kind):
    image = texture(0, 128)
    out, mask = synthetic_anomaly(image, np.random.default_rng(3), kind)
    assert out.shape == image.shape and out.dtype == np.uint8 and mask.shape == image.shape[:2]
    assert mask.any() and (out != image).any(axis=2)[mask].mean() > 0.3
    assert np.array_equal(out[~mask], image[~mask])
    assert image is not out


def test_same_seed_same_defect_and_area_in_range():
    image = texture(1, 128)
    a = synthetic_anomaly(image, np.random.default_rng(5))
    b = synthetic_anomaly(image, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    areas = [blob_mask(128, 128, np.random.default_rng(s), (0.01, 0.02)).mean() for s in range(20)]
    assert 0.004 < np.median(areas) < 0.04


def test_noise_fields_have_the_promised_statistics():
    rng = np.random.default_rng(2)
    field = pink_noise(64, 96, rng)
    assert field.shape == (64, 96) and abs(field.mean()) < 1e-9 and abs(field.std() - 1) < 1e-6
    spectrum = np.abs(np.fft.rfft2(field))
    assert spectrum[1:4, 1:4].mean() > 5 * spectrum[20:30, 20:30].mean()  # 1/f: low frequencies dominate
    noise = perlin_noise(50, 70, 5, rng)
    assert noise.shape == (50, 70) and np.abs(noise).max() <= 1.5


def test_errors_name_the_fix():
    image = texture(0, 64)
    with pytest.raises(ValueError, match="cutpaste"):
        synthetic_anomaly(image, np.random.default_rng(0), "sticker")
    with pytest.raises(ValueError, match="uint8"):
        synthetic_anomaly(image.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="area"):
        synthetic_anomaly(image, np.random.default_rng(0), "perlin", area=(0.5, 0.1))
