"""Texture test, invariant views, and the distribution score against a nearest-patch score on
synthetic textures with real structure (EfficientNet-Lite2, the default backbone)."""

import numpy as np
import pytest
import torch

from vandal.backbones import create_backbone
from vandal.data.layout import image_views
from vandal.memory.augment import apply_transform, paper_transforms
from vandal.memory.texture import invariance_ratios, invariant_transforms, is_texture, stationarity_ratio
from vandal.metrics import auroc

from scenes import capsule_scene
from synthetic import oriented_texture, texture


@pytest.fixture(scope="module")
def taps(one_thread):
    backbone = create_backbone("efficientnet-lite2", device="cpu")

    def embed(images):
        x = torch.cat([image_views(im, backbone.image_size, backbone.preprocessing, "squash")[1] for im in images])
        with torch.inference_mode():
            return [t.float() for t in backbone(x).taps]
    return embed


def test_stationarity_ratio_of_noise_and_of_a_placed_object():
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(42, 42, 16, generator=gen)
    assert 0.3 < stationarity_ratio(noise) < 3.0
    placed = noise.clone()
    placed[10:30, 10:30, :4] += 3.0  # something in the middle, as a part on a backdrop
    assert stationarity_ratio(placed) > 10.0
    with pytest.raises(ValueError):
        stationarity_ratio(noise[:4, :4])


def test_textures_and_objects_are_told_apart_from_the_references(taps):
    weave = taps([texture(s, 192) for s in range(2)])[0]
    streaks = taps([oriented_texture(s, 192) for s in range(2)])[0]
    capsules = taps([capsule_scene(s)[0] for s in range(2)])[0]
    assert is_texture(weave) and is_texture(streaks)
    assert not is_texture(capsules)


def test_invariant_views_follow_the_texture(taps):
    views = paper_transforms()
    names = {}
    for label, image in (("streaks", oriented_texture(0, 192)), ("weave", texture(0, 192))):
        grids = taps([apply_transform(image, t) for t in views])[0]
        ratios = invariance_ratios(grids[0], list(grids), views)
        names[label] = {t.name() for t in invariant_transforms([ratios], views)}
    assert "hflip" not in names["streaks"] and "vflip" not in names["streaks"]  # streaks run one way
    assert "hflip" in names["weave"] and "vflip" in names["weave"]  # a square weave is symmetric
    assert not any(n.startswith("rot") for n in names["weave"])  # ... but not under rotation


def test_the_distribution_source_sees_global_changes_the_memory_misses(one_thread, tmp_path):
    from vandal.detector import Detector

    references = [oriented_texture(s) for s in range(2)]
    normal = [oriented_texture(100 + s) for s in range(6)]
    finer = [oriented_texture(200 + s, period=8.5) for s in range(6)]  # woven finer, everywhere
    turned = [oriented_texture(300 + s, angle=0.7) for s in range(6)]  # turned by 11 degrees
    detector = Detector(device="cpu", progress=False).fit(references)
    assert detector.source_names == ["memory", "distribution"]
    assert detector.plan_.texture and detector.plan_.neighbourhood == (1,)
    memory_only = Detector(device="cpu", progress=False, distribution="off").fit(references)
    labels = np.r_[np.zeros(6), np.ones(6)]
    normal_p = detector.predict(normal)
    assert not any(p.pred_label for p in normal_p)  # new draws of the texture pass
    for changed in (finer, turned):
        changed_p = detector.predict(changed)
        assert all(p.pred_label for p in changed_p)  # every global change is flagged, by the distribution
        assert min(p.distribution_score for p in changed_p) > max(p.distribution_score for p in normal_p)
        memory = [p.pred_score for p in memory_only.predict(normal + changed)]
        assert auroc(labels, np.array(memory)) < 0.9  # measured 0.5-0.6: every patch has a near twin
    weights = detector.sources_[0].tap_weights  # a texture's taps, each in units of its held-out spread
    assert weights is not None and len(weights) == 2 and sum(weights) == pytest.approx(2.0)
    detector.save(str(tmp_path / "model"))
    loaded = Detector.load(str(tmp_path / "model"), device="cpu", progress=False)
    assert loaded.plan_ == detector.plan_
    assert loaded.sources_[0].tap_weights == pytest.approx(weights)
    assert loaded.predict(turned[:1])[0].pred_score == pytest.approx(detector.predict(turned[:1])[0].pred_score)


def test_objects_keep_their_settings_and_textures_can_be_forced_off(one_thread):
    from vandal.detector import Detector

    scenes = [capsule_scene(s)[0] for s in range(2)]
    objects = Detector(device="cpu", progress=False, augment=True).fit(scenes)
    assert not objects.plan_.texture and objects.plan_.neighbourhood == (3,) and len(objects.plan_.views) == 11
    assert objects.sources_[0].tap_weights is None  # objects keep the plain sum over taps
    forced = Detector(device="cpu", progress=False, texture="off").fit([texture(s, 160) for s in range(2)])
    assert not forced.plan_.texture and forced.plan_.views == ("identity",)


def test_the_distribution_source_switches_off_on_a_grid_too_small_for_a_mean(one_thread):
    from vandal.detector import Detector
    from vandal.sources.distribution import MIN_GRID_TOKENS

    references = [oriented_texture(s, size=160) for s in range(2)]
    # 64 px at stride 16: a 4 x 4 deepest grid, 16 tokens < MIN_GRID_TOKENS
    with pytest.warns(UserWarning, match=r"distribution source is off: .* 16 tokens at a 64 px input"):
        small = Detector(device="cpu", progress=False, image_size=64).fit(references)
    assert small.source_names == ["memory"] and MIN_GRID_TOKENS > 16
    assert all(p.distribution_score is None for p in small.predict(references[:1]))
    with pytest.raises(ValueError, match="distribution.mode='only' needs a deepest token grid of >= 64 tokens"):
        Detector(device="cpu", progress=False, image_size=64, distribution="only").fit(references)
    kept = Detector(device="cpu", progress=False, image_size=128).fit(references)  # 8 x 8 = 64 tokens
    assert kept.source_names == ["memory", "distribution"]


def test_tap_weights_scale_each_tap_before_the_sum():
    from vandal.memory.maps import sum_over_taps

    gen = torch.Generator().manual_seed(0)
    fine, coarse = torch.rand(2, 8, 8, generator=gen), torch.rand(2, 4, 4, generator=gen)
    plain = sum_over_taps([fine, coarse], 32)
    assert torch.equal(sum_over_taps([fine, coarse], 32, None), plain)
    weighted = sum_over_taps([fine, coarse], 32, [1.5, 0.5])
    assert torch.allclose(weighted, 1.5 * sum_over_taps([fine], 32) + 0.5 * sum_over_taps([coarse], 32))
