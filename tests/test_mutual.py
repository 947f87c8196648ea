"""Zero-shot mutual comparison: the maths against a loop reference, and real weights on scenes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vandal.detector import Detector
from vandal.scoring.mutual import mutual_object_maps, nearest_other_group

SIZE = 160


@pytest.mark.parametrize("key_chunk", [5, 8192])
def test_nearest_other_group_matches_loop_reference(monkeypatch, key_chunk):
    import vandal.scoring.mutual as mutual

    monkeypatch.setattr(mutual, "KEY_CHUNK", key_chunk)  # 5: key blocks that split items too
    torch.manual_seed(0)
    tokens = torch.randn(4, 3, 2, 5)
    groups = torch.tensor([0, 0, 1, 2])
    got = nearest_other_group(tokens, groups, query_chunk=7)  # a chunk that splits items
    flat = F.normalize(tokens, dim=-1)
    for n in range(4):
        others = flat[groups != groups[n]].reshape(-1, 5)
        for y in range(3):
            for x in range(2):
                expected = (1 - others @ flat[n, y, x]).min().clamp_min(0)
                assert got[n, y, x] == pytest.approx(float(expected), abs=1e-5)


def test_lonely_object_scores_zero():
    maps = mutual_object_maps([torch.randn(1, 4, 4, 8)], size=16)
    assert maps.shape == (1, 16, 16) and maps.abs().sum() == 0


def test_mutual_needs_no_references_and_refuses_them():
    from scenes import capsule_scene

    with pytest.raises(ValueError, match="mutual"):
        Detector(image_size=SIZE, mutual="objects", progress=False).fit([capsule_scene(0, SIZE)[0]])
    with pytest.raises(ValueError, match="mutual"):
        Detector(mutual="siblings").fit()


def _object_peaks(prediction, image, mask):
    """Max of the map over the defective object and over every other object (classical masks)."""
    from scipy import ndimage

    from vandal.segmentation import create_segmenter

    objects = create_segmenter("classical")(image)
    # A chunk is background now: the defective object is the one whose dilated mask meets the defect.
    defective = max(objects, key=lambda o: (ndimage.binary_dilation(o.mask, iterations=4) & mask).sum())
    own = prediction.anomaly_map[defective.mask].max()
    return own, max(prediction.anomaly_map[o.mask].max() for o in objects if o is not defective)


def test_defective_object_scores_highest_in_its_image():
    from scenes import capsule_scene

    detector = Detector(image_size=SIZE, mutual="objects", progress=False).fit()
    assert detector.get_params()["align_objects"] is True  # the default: aligned crops
    # Capsules at ANY angle (0..pi): aligned crops turn every sibling to the same pose. Measured on
    # these 4 scenes: 4 of 4 aligned, 2 of 4 with axis-aligned boxes (align_objects=False).
    scenes = [capsule_scene(seed, SIZE, defect) for seed, defect in ((3, "stain"), (4, "chunk"), (5, "stain"), (6, "chunk"))]
    predictions = detector.predict([image for image, _ in scenes])
    wins = sum(bool(np.greater(*_object_peaks(p, image, mask))) for p, (image, mask) in zip(predictions, scenes))
    assert wins >= 3


def test_unaligned_crops_still_work_for_siblings_in_one_pose():
    from scenes import capsule_scene

    detector = Detector(image_size=SIZE, mutual="objects", align_objects=False, progress=False).fit()
    # Axis-aligned boxes only suit siblings in about the same pose (+-0.2 rad).
    scenes = [capsule_scene(seed, SIZE, defect, max_angle=0.2) for seed, defect in ((3, "stain"), (4, "chunk"))]
    predictions = detector.predict([image for image, _ in scenes])
    for prediction, (image, mask) in zip(predictions, scenes):
        own, others = _object_peaks(prediction, image, mask)
        assert own > others


def test_turned_keys_are_extra_keys_not_queries():
    torch.manual_seed(0)
    taps = [torch.randn(3, 4, 4, 8)]
    turned = [t.flip(1, 2) for t in taps]
    plain = mutual_object_maps(taps, size=8)
    both = mutual_object_maps(taps, size=8, turned_taps=turned)
    assert both.shape == plain.shape and bool((both <= plain + 1e-6).all())  # more keys: never farther
    keys = torch.cat([taps[0], turned[0]])
    direct = nearest_other_group(taps[0], torch.arange(3), keys=keys, key_groups=torch.arange(3).repeat(2))
    assert torch.allclose(direct, nearest_other_group(taps[0], torch.arange(3), keys=keys.flip(0),
                                                      key_groups=torch.arange(3).repeat(2).flip(0)))
    # A lone object's own turned crop is not "another object": nothing to compare with, so 0.
    lone = nearest_other_group(taps[0][:1], torch.zeros(1), keys=keys[[0, 3]], key_groups=torch.zeros(2))
    assert lone.abs().sum() == 0


def test_aligned_crop_turns_the_major_axis_horizontal():
    from vandal.memory.align import aligned_crop, object_frame

    mask = np.zeros((60, 60), bool)
    y, x = np.mgrid[0:60, 0:60]
    mask[np.abs((x - 30) - (y - 30)) <= 3] = True  # a bar at 45 degrees
    mask &= (np.abs(x - 30) <= 15) & (np.abs(y - 30) <= 15)
    frame = object_frame(mask, margin=0.15)
    assert abs(abs(frame.angle) - np.pi / 4) < 0.05
    crop = aligned_crop(np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=-1), frame)
    assert crop.shape[1] > 2 * crop.shape[0]  # long side horizontal
    middle = crop[crop.shape[0] // 2, :, 0]
    assert (middle > 128).mean() > 0.6


def test_batch_mode_is_transductive_and_runs():
    from scenes import capsule_scene

    detector = Detector(image_size=SIZE, mutual="batch", progress=False).fit()
    images = [capsule_scene(seed, SIZE, defect)[0] for seed, defect in ((5, None), (6, None), (7, "stain"))]
    predictions = detector.predict(images)
    assert len(predictions) == 3 and predictions[0].anomaly_map.shape == (SIZE, SIZE)
    assert detector.calibration_.method.startswith("mutual-batch")
    alone = detector.predict(images[:2])  # a different batch gives different scores: transductive
    assert alone[0].pred_score != predictions[0].pred_score
