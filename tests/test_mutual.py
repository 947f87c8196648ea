"""Zero-shot mutual comparison: the maths against a loop reference, and real weights on scenes."""

import pytest
import torch
import torch.nn.functional as F

from vandal.detector import Detector
from vandal.scoring.mutual import mutual_object_maps, nearest_other_group

SIZE = 160


def test_nearest_other_group_matches_loop_reference():
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
    # Siblings in about the same pose (+-0.2 rad): crops are axis-aligned, so a sibling turned by a
    # large angle looks "unlike" the others too (measured: with any rotation the defective object
    # won in only 2 of 4 scenes; with +-0.2 rad in 4 of 4).
    scenes = [capsule_scene(seed, SIZE, defect, max_angle=0.2) for seed, defect in ((3, "stain"), (4, "chunk"))]
    predictions = detector.predict([image for image, _ in scenes])
    for prediction, (image, mask) in zip(predictions, scenes):
        own, others = _object_peaks(prediction, image, mask)
        assert own > others


def test_batch_mode_is_transductive_and_runs():
    from scenes import capsule_scene

    detector = Detector(image_size=SIZE, mutual="batch", progress=False).fit()
    images = [capsule_scene(seed, SIZE, defect)[0] for seed, defect in ((5, None), (6, None), (7, "stain"))]
    predictions = detector.predict(images)
    assert len(predictions) == 3 and predictions[0].anomaly_map.shape == (SIZE, SIZE)
    assert detector.calibration_.method.startswith("mutual-batch")
    alone = detector.predict(images[:2])  # a different batch gives different scores: transductive
    assert alone[0].pred_score != predictions[0].pred_score
