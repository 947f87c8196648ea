import numpy as np
import pytest
import torch

from vandal.backbones.base import Preprocessing
from vandal.data.layout import View, crop_view, image_views, merge_views, plan_views, product_policy

PREP = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resample="bilinear")


def test_squash_is_one_view_of_the_whole_image():
    assert plan_views(500, 1250, "squash") == [View(0, 0, 1250, 500)]


def test_pad_centres_the_image_in_a_square():
    (view,) = plan_views(500, 1250, "pad")
    assert (view.x1 - view.x0, view.y1 - view.y0) == (1250, 1250)
    assert view.y0 == -375 and view.x0 == 0


def test_tiles_cover_long_image_with_square_tiles():
    views = plan_views(500, 1250, "tile")
    assert len(views) == 3
    assert all(v.x1 - v.x0 == 500 and v.y1 - v.y0 == 500 for v in views)
    assert views[0].x0 == 0 and views[-1].x1 == 1250
    tall = plan_views(1250, 500, "tile")
    assert len(tall) == 3 and tall[-1].y1 == 1250


def test_auto_is_decided_once_per_product_from_the_references():
    assert product_policy("auto", [(500, 1250), (500, 1240), (480, 600)]) == "tile"  # the median reference is long
    assert product_policy("auto", [(500, 600), (500, 1240), (480, 600)]) == "squash"
    assert product_policy("auto", []) == "auto"  # no references (zero-shot): per image
    assert product_policy("pad", [(500, 1250)]) == "pad"


def test_a_fitted_detector_lays_out_every_image_as_its_references(tmp_path):
    from vandal.detector import Detector

    rng = np.random.default_rng(0)
    long = [rng.integers(0, 255, (100, 260, 3), dtype=np.uint8) for _ in range(2)]
    square = rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)
    tiled = Detector(image_size=64, progress=False, distribution="off").fit(long)
    squashed = Detector(image_size=64, progress=False, distribution="off").fit([square, square[::-1]])
    assert tiled.plan_.resize == "tile" and squashed.plan_.resize == "squash"
    assert len(squashed.embedder_.image(long[0]).views) == 1  # a long test part of a square product: squashed
    tiled.save(str(tmp_path / "m"))
    assert Detector.load(str(tmp_path / "m"), progress=False).embedder_.resize == "tile"


def test_auto_tiles_long_images_and_squashes_near_square_ones():
    assert plan_views(100, 140, "auto") == plan_views(100, 140, "squash")
    assert plan_views(100, 150, "auto") == plan_views(100, 150, "tile") and len(plan_views(100, 150, "auto")) == 2
    assert plan_views(500, 1250, "auto") == plan_views(500, 1250, "tile")
    assert plan_views(1250, 500, "auto") == plan_views(1250, 500, "tile")


def test_unknown_policy():
    with pytest.raises(ValueError, match="policy"):
        plan_views(10, 10, "stretch")


@pytest.mark.parametrize("policy", ["squash", "pad", "tile"])
def test_merge_returns_original_size_and_keeps_constant_maps(policy):
    views = plan_views(50, 125, policy)
    maps = torch.full((len(views), 32, 32), 0.7)
    merged = merge_views(maps, views, 50, 125)
    assert merged.shape == (50, 125)
    assert torch.allclose(merged, torch.full_like(merged, 0.7))


def test_merge_places_a_tile_hot_spot_where_it_was():
    views = plan_views(40, 120, "tile")
    maps = torch.zeros(len(views), 40, 40)
    maps[-1, 20, 39] = 1.0  # right edge of the last tile = right edge of the image
    merged = merge_views(maps, views, 40, 120)
    assert int(merged.flatten().argmax()) % 120 >= 110


def test_crop_view_pads_with_edges_and_inputs_are_normalised():
    image = np.zeros((4, 10, 3), dtype=np.uint8)
    image[0] = 255
    (view,) = plan_views(4, 10, "pad")
    crop = crop_view(image, view)
    assert crop.shape == (10, 10, 3) and (crop[0] == 255).all()
    views, inputs = image_views(image, 32, PREP, "pad")
    assert inputs.shape == (1, 3, 32, 32) and float(inputs.max()) == pytest.approx(1.0) and float(inputs.min()) == pytest.approx(-1.0)


def _merge_by_full_interpolation(maps, views, height, width):
    """The reference: every view upsampled whole with F.interpolate, cropped, averaged per pixel."""
    total, count = torch.zeros(height, width), torch.zeros(height, width)
    for view_map, v in zip(maps, views, strict=True):
        full = torch.nn.functional.interpolate(view_map[None, None], size=(v.y1 - v.y0, v.x1 - v.x0),
                                               mode="bilinear", align_corners=False)[0, 0]
        ys, xs, ye, xe = max(0, v.y0), max(0, v.x0), min(height, v.y1), min(width, v.x1)
        total[ys:ye, xs:xe] += full[ys - v.y0: ye - v.y0, xs - v.x0: xe - v.x0]
        count[ys:ye, xs:xe] += 1
    return total / count.clamp_min(1)


@pytest.mark.parametrize("height, width", [(50, 125), (125, 50), (333, 1000), (7, 900), (64, 64)])
@pytest.mark.parametrize("policy", ["squash", "pad", "tile"])
def test_merge_matches_whole_view_interpolation(height, width, policy):
    torch.manual_seed(0)
    views = plan_views(height, width, policy)
    maps = torch.rand(len(views), 40, 40) * 10
    merged, expected = merge_views(maps, views, height, width), _merge_by_full_interpolation(maps, views, height, width)
    if policy == "pad" and height != width:
        # Only the window over the image is computed, with F.interpolate's indices and weights:
        # equal up to float rounding.
        torch.testing.assert_close(merged, expected, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(merged, expected)
