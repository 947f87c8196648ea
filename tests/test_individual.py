"""Individual memory bank: pure helpers, the gain on multi-object scenes (real weights), bundles."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vandal.detector import Detector
from vandal.memory.individual import ObjectCrop, fuse_maps, paste_object_maps, use_individual
from vandal.metrics import auroc

SIZE = 192  # scenes and backbone input: small enough for CPU, large enough for 3-6 capsules


def test_paste_keeps_tight_box_and_zero_background():
    maps = torch.stack([torch.full((8, 8), 1.0), torch.full((8, 8), 3.0)])
    objects = [ObjectCrop(box=(4, 4, 8, 8), crop=(2, 2, 10, 10)), ObjectCrop(box=(6, 6, 12, 12), crop=(6, 6, 12, 12))]
    out = paste_object_maps(maps, objects, 16, 16)
    assert out.shape == (16, 16)
    assert out[4, 4] == 1.0 and out[7, 7] == 3.0  # overlap keeps the larger value
    assert out[2, 2] == 0.0  # the margin of the crop is not pasted
    assert out[:, 12:].abs().sum() == 0 and out[:4].abs().sum() == 0


def test_aligned_paste_covers_each_object_and_nothing_far_away():
    from vandal.memory.individual import find_objects
    from vandal.segmentation import create_segmenter

    from scenes import capsule_scene

    image, _ = capsule_scene(3, 160)
    segmenter = create_segmenter("classical")
    objects = find_objects(image, segmenter, align=True)
    assert objects and all(o.frame is not None for o in objects)
    out = paste_object_maps(torch.ones(len(objects), 16, 16), objects, 160, 160)
    masks = np.stack([o.mask for o in segmenter(image)])
    assert torch.allclose(out[torch.from_numpy(masks.any(0))], torch.tensor(1.0))  # every object pixel gets its map
    boxes = np.zeros((160, 160), bool)
    for o in objects:
        boxes[o.box[1]:o.box[3], o.box[0]:o.box[2]] = True
    assert out[torch.from_numpy(~boxes)].abs().sum() == 0  # nothing outside the objects' boxes


def test_auto_mode_and_fusion():
    assert use_individual("auto", [3, 2, 5]) and not use_individual("auto", [3, 1])
    assert not use_individual("auto", []) and use_individual("on", [1]) and not use_individual("off", [4])
    with pytest.raises(ValueError):
        use_individual("sometimes", [2])
    g, i = torch.ones(2, 2), torch.full((2, 2), 4.0)
    assert torch.equal(fuse_maps(g, i, "sum", None), g + i)
    assert torch.allclose(fuse_maps(g, i, "mean", (2.0, 8.0)), torch.full((2, 2), 0.5))
    assert fuse_maps(g, None, "mean", None) is g


@pytest.fixture(scope="module")
def scenes():
    from scenes import capsule_scene, scene_set

    references = [capsule_scene(100 + i, SIZE)[0] for i in range(2)]
    images, masks, labels = scene_set(3, 5, seed=0, size=SIZE)
    return references, images, masks, np.array(labels)


def _evaluate(detector, scenes):
    references, images, masks, labels = scenes
    predictions = detector.fit(references).predict(images)
    image = auroc(labels, np.array([p.pred_score for p in predictions]))
    pixel = auroc(np.concatenate([m.ravel() for m in masks]), np.concatenate([p.anomaly_map.ravel() for p in predictions]))
    return image, pixel, predictions


@pytest.fixture(scope="module")
def global_only(scenes):
    return _evaluate(Detector(image_size=SIZE, progress=False), scenes)


@pytest.fixture(scope="module")
def with_individual(scenes):
    detector = Detector(image_size=SIZE, individual="auto", progress=False)
    return (*_evaluate(detector, scenes), detector)


@pytest.mark.slow  # real weights on CPU: the whole file takes ~2.5 CPU-minutes
def test_individual_bank_beats_global_only(global_only, with_individual):
    image_g, pixel_g, _ = global_only
    image_i, pixel_i, _, detector = with_individual
    assert "objects" in detector.source_names  # "auto": every reference holds >= 2 capsules
    assert pixel_i > pixel_g
    assert image_i > image_g


@pytest.mark.slow  # real weights on CPU: the whole file takes ~2.5 CPU-minutes
def test_augmentation_does_not_hurt_rotated_objects(scenes, with_individual):
    _, pixel_plain, _, _ = with_individual
    _, pixel_aug, _ = _evaluate(Detector(image_size=SIZE, individual="on", augment=True, progress=False), scenes)
    assert pixel_aug >= pixel_plain - 0.005


@pytest.mark.slow  # real weights on CPU: the whole file takes ~2.5 CPU-minutes
def test_bundle_round_trip_keeps_individual_banks(tmp_path, scenes, with_individual):
    _, images, _, _ = scenes
    *_, predictions, detector = with_individual
    detector.save(str(tmp_path / "det"))
    tensors = load_file(str(tmp_path / "det" / "tensors.safetensors"))
    assert "objects.tap0.r3" in tensors and "objects.tap1.r3" in tensors
    loaded = Detector.load(str(tmp_path / "det"), progress=False)
    assert loaded.get_params()["individual"] == "auto" and "objects" in loaded.source_names
    assert loaded.get_params()["align_objects"] is True  # the banks hold aligned crops: queries must be too
    again = loaded.predict(images[-2:])
    for a, b in zip(predictions[-2:], again):
        assert a.pred_score == pytest.approx(b.pred_score, rel=1e-5)
        np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # real weights on CPU: the whole file takes ~2.5 CPU-minutes
def test_mean_fusion_scales_come_from_references(scenes):
    references, images, _, _ = scenes
    detector = Detector(image_size=SIZE, individual="on", fusion="mean", neighbourhood=(1,), progress=False)
    detector.fit(references)
    assert detector.calibration_.scales is not None and all(s > 0 for s in detector.calibration_.scales)
    first = detector.predict(images[:1])[0].pred_score
    detector.predict(images[1:3])  # other test images must not move the first one's score
    assert detector.predict(images[:1])[0].pred_score == first
