"""Segmenters: pure mask helpers, the classical segmenter on synthetic scenes and a real MVTec
bottle, and the SAM segmenter end to end with a tiny random SamModel saved to disk."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from vandal.segmentation import (
    ClassicalSegmenter,
    ObjectMask,
    Segmenter,
    box_nms,
    create_segmenter,
    crop_box,
    deduplicate,
    drop_nested,
    filter_masks,
    mask_box,
    mask_iou,
)

# /work/shared next to the checkout, as in conftest.py; the test skips when it is absent.
BOTTLE = Path(__file__).resolve().parents[2] / "shared/data/mvtec_ad/bottle/train/good/000.png"


# ----------------------------------------------------------------------------- synthetic scenes


def _shape_mask(hw, center, half_axes, angle, kind):
    """Filled ellipse or rounded rectangle, rotated by `angle` (radians)."""
    yy, xx = np.mgrid[: hw[0], : hw[1]].astype(np.float64)
    dx, dy = xx - center[0], yy - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    a, b = half_axes
    if kind == "ellipse":
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    r = 0.3 * min(a, b)  # corner radius
    qx, qy = np.abs(u) - (a - r), np.abs(v) - (b - r)
    outside = np.hypot(np.clip(qx, 0, None), np.clip(qy, 0, None))
    return outside + np.minimum(np.maximum(qx, qy), 0) <= r


def make_scene(seed: int, hw=(192, 224), noise: float = 4.0):
    """(H, W, 3) uint8 scene of 3-6 non-overlapping textured objects on a plain background with
    Gaussian pixel noise of std `noise`, and their (H, W) bool masks."""
    rng = np.random.default_rng(seed)
    h, w = hw
    background = rng.uniform(20, 235, size=3)
    image = np.empty((h, w, 3))
    image[:] = background
    yy, xx = np.mgrid[:h, :w]
    masks: list[np.ndarray] = []
    occupied = np.zeros(hw, dtype=bool)
    target = int(rng.integers(3, 7))
    while len(masks) < target:
        a, b = rng.uniform(12, 28), rng.uniform(8, 18)
        center = (rng.uniform(a + 6, w - a - 6), rng.uniform(a + 6, h - a - 6))
        mask = _shape_mask(hw, center, (a, b), rng.uniform(0, np.pi), rng.choice(["ellipse", "rect"]))
        # A 10-pixel moat around every object, so objects never touch.
        if (ndimage.binary_dilation(mask, iterations=10) & occupied).any():
            continue
        while True:
            color = rng.uniform(0, 255, size=3)
            if np.linalg.norm(color - background) > 90:
                break
        stripes = 18 * np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / rng.uniform(4, 9))
        image[mask] = np.clip(color + stripes[mask, None], 0, 255)
        occupied |= mask
        masks.append(mask)
    image += rng.normal(0, noise, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), masks


# ----------------------------------------------------------------------------- pure helpers


def _obj(mask: np.ndarray, score: float) -> ObjectMask:
    return ObjectMask.from_mask(mask, score)


def _rect(hw, x0, y0, x1, y1):
    m = np.zeros(hw, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_box_and_iou():
    m = _rect((20, 30), 3, 5, 10, 8)
    assert mask_box(m) == (3, 5, 10, 8)
    assert mask_box(np.zeros((4, 4), bool)) == (0, 0, 0, 0)
    other = _rect((20, 30), 6, 5, 13, 8)  # 4 of 7 columns shared
    assert mask_iou(m, other) == pytest.approx(12 / 30)
    assert mask_iou(m, m) == 1.0
    assert mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 0.0


def test_deduplicate_keeps_higher_score():
    hw = (40, 40)
    a = _obj(_rect(hw, 0, 0, 20, 20), 0.5)
    a_dup = _obj(_rect(hw, 0, 0, 20, 19), 0.9)  # IoU 0.95 with a, better score
    b = _obj(_rect(hw, 25, 25, 35, 35), 0.1)
    half = _obj(_rect(hw, 0, 0, 10, 20), 0.95)  # IoU 0.5 with a: not a duplicate at 0.7
    kept = deduplicate([a, a_dup, b, half], iou_threshold=0.7)
    assert [k.score for k in kept] == [0.95, 0.9, 0.1]
    assert len(deduplicate([a, a_dup, b, half], iou_threshold=0.4)) == 2


def test_filter_masks_drops_specks_background_and_empty():
    hw = (100, 100)
    speck = _obj(_rect(hw, 0, 0, 2, 2), 1.0)  # 0.04 %
    obj = _obj(_rect(hw, 10, 10, 40, 40), 1.0)  # 9 %
    background = _obj(~_rect(hw, 10, 10, 20, 20), 1.0)  # 99 %
    empty = _obj(np.zeros(hw, bool), 1.0)
    kept = filter_masks([speck, obj, background, empty], 100 * 100, 0.001, 0.9)
    assert kept == [obj]
    assert filter_masks([empty], 100 * 100, 0.0, 1.0) == []


def test_crop_box_margin_and_clipping():
    assert crop_box((10, 20, 30, 60), 0.1, (100, 100)) == (8, 16, 32, 64)
    assert crop_box((0, 5, 50, 95), 0.2, (100, 60)) == (0, 0, 60, 100)
    assert crop_box((10, 20, 30, 60), 0.0, (100, 100)) == (10, 20, 30, 60)


def test_drop_nested_removes_parts():
    hw = (50, 50)
    whole = _obj(_rect(hw, 0, 0, 30, 30), 0.8)
    part = _obj(_rect(hw, 5, 5, 15, 15), 0.99)
    straddling = _obj(_rect(hw, 25, 25, 45, 45), 0.9)  # only 25/400 inside `whole`
    kept = drop_nested([part, whole, straddling], 0.9)
    assert kept == [straddling, whole] or kept == [whole, straddling]
    assert part not in kept


def test_box_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    scores = np.array([0.5, 0.9, 0.3, 0.1])
    assert box_nms(boxes, scores, 0.7).tolist() == [1, 2]
    assert box_nms(boxes, scores, 1.0).tolist() == [1, 0, 2, 3]
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_stability_score():
    from vandal.segmentation import stability_score

    logits = torch.full((2, 10, 10), -5.0)
    logits[0, :4, :5] = 5.0  # crisp: both cuts give the same 20 pixels
    logits[1, :4, :5] = 5.0
    logits[1, 4:6, :5] = 0.5  # 10 soft pixels in (-1, +1): IoU 20 / 30
    scores = stability_score(logits, mask_threshold=0.0, offset=1.0)
    assert scores.tolist() == pytest.approx([1.0, 20 / 30])
    assert stability_score(torch.full((1, 4, 4), -9.0)).tolist() == [0.0]  # empty, not NaN


# ----------------------------------------------------------------------------- classical


@pytest.mark.parametrize("seed, noise", [(0, 4), (1, 4), (2, 4), (3, 12), (4, 12), (5, 0)])
def test_classical_finds_every_object(seed, noise):
    image, gt = make_scene(seed, noise=noise)
    objects = ClassicalSegmenter()(image)
    assert 3 <= len(gt) <= 6
    assert len(objects) == len(gt)
    for g in gt:
        assert max(mask_iou(g, o.mask) for o in objects) >= 0.8
    for o in objects:
        assert o.mask.shape == image.shape[:2] and o.mask.dtype == bool
        assert o.box == mask_box(o.mask)
        assert 0.0 <= o.score <= 1.0
    areas = [o.area for o in objects]
    assert areas == sorted(areas, reverse=True)


def test_classical_downscaled_processing_matches():
    # max_side below the image size runs the work at a lower resolution; masks come back full-size.
    image, gt = make_scene(7)
    objects = ClassicalSegmenter(max_side=150)(image)
    assert len(objects) == len(gt)
    assert all(o.mask.shape == image.shape[:2] for o in objects)
    for g in gt:
        assert max(mask_iou(g, o.mask) for o in objects) >= 0.8


def test_classical_empty_scene():
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 4, size=(64, 80, 3)), 0, 255).astype(np.uint8)
    assert ClassicalSegmenter()(image) == []


@pytest.mark.skipif(not BOTTLE.exists(), reason="MVTec AD bottle not available")
def test_classical_on_mvtec_bottle():
    from PIL import Image

    image = np.asarray(Image.open(BOTTLE).convert("RGB"))
    h, w = image.shape[:2]
    objects = ClassicalSegmenter()(image)
    # A bottle seen from above on a white backdrop: one disc covering ~62 % of the 900x900 frame.
    assert len(objects) == 1
    bottle = objects[0]
    assert 0.45 < bottle.area / (h * w) < 0.8
    x0, y0, x1, y1 = bottle.box
    assert abs((x0 + x1) / 2 - w / 2) < 0.05 * w and abs((y0 + y1) / 2 - h / 2) < 0.05 * h
    assert 0.8 < (x1 - x0) / w < 0.95 and 0.8 < (y1 - y0) / h < 0.95
    assert bottle.mask[h // 2, w // 2]  # the dark mouth is filled, not a hole


# ----------------------------------------------------------------------------- SAM


def _tiny_sam_config():
    from transformers import SamConfig

    side, patch, dim = 64, 16, 32
    return SamConfig(
        vision_config=dict(
            hidden_size=dim, output_channels=dim, num_hidden_layers=2, num_attention_heads=2,
            image_size=side, patch_size=patch, window_size=2, global_attn_indexes=[1],
            num_pos_feats=dim // 2, mlp_dim=2 * dim,
        ),
        prompt_encoder_config=dict(
            hidden_size=dim, image_size=side, patch_size=patch, mask_input_channels=4
        ),
        mask_decoder_config=dict(
            hidden_size=dim, mlp_dim=2 * dim, num_hidden_layers=2, num_attention_heads=2,
            iou_head_hidden_dim=dim,
        ),
    )


@pytest.fixture(scope="module")
def tiny_sam_dirs(tmp_path_factory):
    """A tiny random SAM saved twice: with its processor, and model weights only."""
    from transformers import SamModel

    from vandal.segmentation.sam import _processor_for

    torch.manual_seed(0)
    config = _tiny_sam_config()
    model = SamModel(config)
    full = tmp_path_factory.mktemp("tiny_sam")
    model.save_pretrained(full)
    _processor_for(config).save_pretrained(full)
    bare = tmp_path_factory.mktemp("tiny_sam_bare")
    model.save_pretrained(bare)
    return str(full), str(bare)


# Thresholds 0 switch the quality filters off; random weights then still yield masks.
LOOSE = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, min_area_frac=0.0, max_area_frac=1.0)


def _check_structure(objects, image, min_frac=0.0, max_frac=1.0):
    h, w = image.shape[:2]
    for o in objects:
        assert isinstance(o, ObjectMask)
        assert o.mask.shape == (h, w) and o.mask.dtype == bool
        assert o.box == mask_box(o.mask)
        assert max(min_frac * h * w, 1) <= o.area <= max_frac * h * w
    areas = [o.area for o in objects]
    assert areas == sorted(areas, reverse=True)


def test_sam_end_to_end_loose_thresholds(tiny_sam_dirs):
    image = make_scene(1)[0][::4, ::3]  # 48 x 75, not square: exercises resize + un-padding
    segmenter = create_segmenter(
        tiny_sam_dirs[0], points_per_side=4, batch_size=5, device="cpu", **LOOSE
    )
    objects = segmenter(image)
    assert len(objects) > 0
    _check_structure(objects, image)


def test_sam_embeds_once_and_batches_points(tiny_sam_dirs, monkeypatch):
    image = make_scene(2)[0][::3, ::3]
    segmenter = create_segmenter(
        tiny_sam_dirs[0], points_per_side=4, batch_size=5, device="cpu", **LOOSE
    )
    calls = {"embed": 0, "forward": 0}
    embed, forward = segmenter.model.get_image_embeddings, segmenter.model.forward

    def counting_embed(*a, **k):
        calls["embed"] += 1
        return embed(*a, **k)

    def counting_forward(*a, **k):
        calls["forward"] += 1
        assert k["input_points"].shape[1] <= 5
        return forward(*a, **k)

    monkeypatch.setattr(segmenter.model, "get_image_embeddings", counting_embed)
    monkeypatch.setattr(segmenter.model, "forward", counting_forward)
    segmenter(image)
    assert calls == {"embed": 1, "forward": 4}  # 16 points in batches of 5


def test_sam_filters_are_obeyed(tiny_sam_dirs):
    image = make_scene(3)[0][::3, ::3]
    base = create_segmenter(tiny_sam_dirs[0], points_per_side=4, batch_size=16, device="cpu", **LOOSE)

    def run(**params):
        # Parameters are plain attributes read at call time: a shallow copy shares the model.
        segmenter = copy.copy(base)
        vars(segmenter).update(params)
        return segmenter(image)

    # Predicted IoU is an unbounded regression output, so only +inf is surely impossible;
    # stability is an IoU, never above 1.
    assert run(pred_iou_thresh=float("inf")) == []
    assert run(stability_score_thresh=1.01) == []
    _check_structure(run(min_area_frac=0.05, max_area_frac=0.5), image, 0.05, 0.5)

    everything = run(box_nms_thresh=1.0, nested_containment=None)
    deduplicated = run(box_nms_thresh=0.95, nested_containment=None)
    assert len(everything) == 16 * 3  # nothing suppressed: three masks per point prompt
    assert 2 <= len(deduplicated) < len(everything)
    for i, a in enumerate(deduplicated):
        for b in deduplicated[i + 1 :]:
            assert mask_iou(a.mask, b.mask) <= 0.95


def test_sam_loads_bare_model_dir(tiny_sam_dirs):
    # No processor config saved: one is built from the model config.
    image = make_scene(4)[0][::5, ::4]
    segmenter = create_segmenter(
        "sam", model=tiny_sam_dirs[1], points_per_side=2, device="cpu", **LOOSE
    )
    objects = segmenter(image)
    assert len(objects) > 0
    _check_structure(objects, image)


def test_registry():
    classical = create_segmenter("classical", min_area_frac=0.01)
    assert isinstance(classical, ClassicalSegmenter) and isinstance(classical, Segmenter)
    assert classical.min_area_frac == 0.01
    with pytest.raises(ValueError, match="unknown segmenter"):
        create_segmenter("clasical")


def test_as_rgb_boundary():
    from vandal.segmentation import as_rgb

    grey = np.zeros((4, 5), np.uint8)
    assert as_rgb(grey).shape == (4, 5, 3)
    assert as_rgb(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(TypeError):
        as_rgb(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError):
        as_rgb(np.zeros((4, 5, 2), np.uint8))


def test_sam_missing_weights_message(tmp_path):
    with pytest.raises(OSError, match="classical"):
        create_segmenter(str(tmp_path))  # an empty local directory: no network involved
