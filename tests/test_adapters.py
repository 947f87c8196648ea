"""APRIL-GAN adapters: losses, mosaic, training that learns, resume, checkpoints, compatibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vandal.backbones import create_backbone
from vandal.data.datasets import Sample, load_mvtec
from vandal.data.layout import to_input
from vandal.metrics import auroc
from vandal.scoring.adapters import (
    AUTHORS_KEY,
    IncompatibleAdaptersError,
    TapAdapters,
    adapters_from_state,
    load_adapters,
    read_adapters_file,
    zero_shot_maps,
)
from vandal.training.adapters import (
    TrainConfig,
    class_text,
    init_adapters,
    state_path,
    tap_probabilities,
    train_adapters,
)
from vandal.training.data import TrainingSamples, epoch_plan, load_item, training_samples
from vandal.training.losses import adapter_loss, dice_loss, focal_loss
from vandal.training.mosaic import mosaic_2x2, pick_members

from adapter_data import blob_defect, write_tree
from clip_fixtures import TINY_EMBED, TINY_WIDTH, make_tiny_clip

SIZE = 64  # an 8x8 token grid on the tiny CLIP's 8-px patches


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def backbone(tiny_dir):
    return create_backbone(tiny_dir, image_size=SIZE)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingSamples:
    return training_samples(load_mvtec(write_tree(tmp_path_factory.mktemp("tree"))))


@pytest.fixture(scope="module")
def trained(backbone, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "adapters.safetensors"
    return train_adapters(backbone, data, TrainConfig(epochs=6, batch_size=4), out, progress=False)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- losses


def _reference_focal(probs, target, gamma=2.0, smooth=1e-5):
    """APRIL-GAN's FocalLoss.forward, step by step (alpha = 1, size_average)."""
    logit = probs.view(probs.size(0), probs.size(1), -1).permute(0, 2, 1).reshape(-1, probs.size(1))
    idx = target.reshape(-1, 1).long()
    one_hot = torch.zeros(idx.size(0), probs.size(1)).scatter_(1, idx, 1)
    one_hot = torch.clamp(one_hot, smooth / (probs.size(1) - 1), 1.0 - smooth)
    pt = (one_hot * logit).sum(1) + smooth
    return (-1 * torch.pow(1 - pt, gamma) * pt.log()).mean()


def test_losses_match_the_reference_code():
    probs = _randn(3, 2, 5, 6).softmax(dim=1)
    target = (_randn(3, 5, 6, seed=1) > 0.5).float()
    torch.testing.assert_close(focal_loss(probs, target), _reference_focal(probs, target))
    flat_p, flat_t = probs[:, 1].reshape(3, -1), target.reshape(3, -1)
    dice = (2 * (flat_p * flat_t).sum(1) + 1) / (flat_p.sum(1) + flat_t.sum(1) + 1)
    torch.testing.assert_close(dice_loss(probs[:, 1], target), 1 - dice.mean())
    # A perfect map scores (nearly) zero; summing over taps adds up.
    perfect = torch.stack([1 - target, target], dim=1)
    assert float(focal_loss(perfect, target)) < 1e-6 and float(dice_loss(target, target)) < 0.05
    total = focal_loss(probs, target) + dice_loss(probs[:, 1], target)
    torch.testing.assert_close(adapter_loss([probs, probs], target), 2 * total)


# ---------------------------------------------------------------------------- mosaic and plan


def test_mosaic_tiles_in_reading_order():
    images = [np.full((4, 6, 3), 10 * (i + 1), np.uint8) for i in range(3)] + [np.full((8, 12, 3), 40, np.uint8)]
    masks = [np.zeros((4, 6), bool) for _ in range(3)] + [np.ones((8, 12), bool)]
    image, mask = mosaic_2x2(images, masks)
    assert image.shape == (8, 12, 3) and mask.shape == (8, 12)
    assert [int(image[y, x, 0]) for y, x in ((0, 0), (0, 6), (4, 0), (4, 6))] == [10, 20, 30, 40]
    assert mask[4:, 6:].all() and not mask[:4].any() and not mask[4:, :6].any()
    with pytest.raises(ValueError):
        mosaic_2x2(images[:3], masks[:3])


def _samples(kinds: list[str], category: str) -> list[Sample]:
    return [Sample(path=None, label=int(k != "good"), mask_path=None, defect_type=k, category=category)
            for k in kinds]


def test_epoch_plan_is_a_function_of_seed_and_epoch():
    samples = _samples(["good", "a", "a", "b"], "x") + _samples(["good", "c", "c"], "y")
    data = TrainingSamples(samples, [0, 0, 0, 0, 1, 1, 1], ["x", "y"])
    plan = epoch_plan(data, seed=111, epoch=0, mosaic_prob=0.5)
    assert plan == epoch_plan(data, seed=111, epoch=0, mosaic_prob=0.5)
    assert plan != epoch_plan(data, seed=111, epoch=1, mosaic_prob=0.5)
    mosaics = [item for item in plan if len(item) == 4]
    assert mosaics and len(plan) == len(samples)
    for item in mosaics:  # four members of one class
        assert len({data.classes[i] for i in item}) == 1
    plain = epoch_plan(data, seed=3, epoch=0)
    assert sorted(i for (i,) in plain) == list(range(len(samples)))
    # Defect types are drawn uniformly first, as the reference's combine_img does.
    rng = np.random.default_rng(0)
    draws = [samples[i].defect_type for _ in range(500) for i in pick_members(rng, {"good": [0], "a": [1, 2]})]
    assert 0.4 < draws.count("good") / len(draws) < 0.6


def test_mosaic_items_load_with_their_masks(data, backbone):
    defect = next(i for i, s in enumerate(data.samples) if s.mask_path is not None)
    good = next(i for i, s in enumerate(data.samples) if s.mask_path is None)
    pixels, mask = load_item(data.samples, (defect, good, good, defect), SIZE, backbone.preprocessing)
    assert pixels.shape == (3, SIZE, SIZE) and mask.shape == (SIZE, SIZE)
    single = load_item(data.samples, (defect,), SIZE // 2, backbone.preprocessing)[1]
    half = SIZE // 2
    assert mask[:half, half:].sum() == 0 and mask[half:, :half].sum() == 0
    assert abs(float(mask[:half, :half].sum()) - float(single.sum())) <= 0.1 * float(single.sum()) + 4


def test_a_dataset_without_masks_is_refused(tmp_path):
    splits = load_mvtec(write_tree(tmp_path, with_masks=False))
    with pytest.raises(ValueError, match="no anomaly masks"):
        training_samples(splits)


# ---------------------------------------------------------------------------- the map formula


def test_adapter_maps_equal_method_section_3():
    adapters = TapAdapters([6, 4], embed_dim=8)
    taps = [_randn(2, 3, 3, 6, seed=2), _randn(2, 3, 3, 4, seed=3)]
    text = F.normalize(_randn(2, 8, seed=4), dim=-1)
    expected = 0
    for fc, tap in zip(adapters.fc, taps):  # written out: Linear, normalise, 100 F T^T, upsample, softmax
        feats = F.normalize(tap @ fc.weight.T + fc.bias, dim=-1)
        logits = torch.einsum("bhwd,kd->bkhw", feats, text) * 100
        expected = expected + F.interpolate(logits, size=(7, 7), mode="bilinear", align_corners=True).softmax(1)[:, 1]
    with torch.no_grad():
        torch.testing.assert_close(zero_shot_maps(adapters, taps, text, 7), expected)
        smooth = zero_shot_maps(adapters, taps, text, 7, smoothing_sigma=1.0)
        # Training uses per-image text; with one class it is the same map, channel by channel.
        probs = tap_probabilities(adapters(taps), text.expand(2, 2, 8), 7)
    assert not torch.allclose(smooth, expected)
    torch.testing.assert_close(sum(p[:, 1] for p in probs), expected)
    torch.testing.assert_close(probs[0].sum(1), torch.ones(2, 7, 7))


# ---------------------------------------------------------------------------- training


def _heldout_auroc(backbone, adapters, count=6) -> float:
    held = [blob_defect(1000 + i, SIZE) for i in range(count)]
    pixels = torch.stack([to_input(image, SIZE, backbone.preprocessing) for image, _ in held])
    text = class_text(backbone, ["widget"])[0]
    with torch.no_grad():
        maps = zero_shot_maps(adapters, backbone(pixels).taps, text, SIZE)
    return auroc(np.stack([m for _, m in held]).ravel(), maps.numpy().ravel())


def test_training_learns_to_localise(backbone, trained):
    assert all(b < a for a, b in zip(trained.losses, trained.losses[1:])), trained.losses
    assert _heldout_auroc(backbone, trained.adapters) >= 0.9
    # One random init may correlate with the blobs by luck, either way; on average it is chance.
    untrained = [_heldout_auroc(backbone, init_adapters(backbone, seed)) for seed in range(8)]
    assert abs(np.mean(untrained) - 0.5) < 0.15, untrained


def test_checkpoint_records_metadata(backbone, trained, tiny_dir):
    state, metadata = read_adapters_file(trained.path)
    assert metadata["backbone"]["name"] == tiny_dir and metadata["backbone"]["taps"] == [1, 2, 3, 4]
    assert metadata["backbone"]["image_size"] == SIZE and metadata["class_names"] == ["widget"]
    assert metadata["training"]["epochs"] == 6 and len(metadata["training"]["losses"]) == 6
    assert metadata["training"]["seed"] == 111 and metadata["training"]["betas"] == [0.5, 0.999]
    loaded = load_adapters(trained.path, backbone.spec)
    for key, value in trained.adapters.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert state_path(trained.path).is_file()


def test_resume_reaches_the_uninterrupted_weights(backbone, data, tmp_path):
    config = TrainConfig(epochs=3, batch_size=4, mosaic=0.5, seed=5)
    straight = train_adapters(backbone, data, config, tmp_path / "a.safetensors", progress=False)
    first = TrainConfig(**{**config.__dict__, "epochs": 1})
    train_adapters(backbone, data, first, tmp_path / "b.safetensors", progress=False)
    resumed = train_adapters(backbone, data, config, tmp_path / "b.safetensors", resume=True, progress=False)
    assert resumed.losses == straight.losses
    for key, value in straight.adapters.state_dict().items():
        assert torch.equal(resumed.adapters.state_dict()[key], value), key
    other = TrainConfig(**{**config.__dict__, "seed": 6})
    with pytest.raises(ValueError, match="seed"):
        train_adapters(backbone, data, other, tmp_path / "b.safetensors", resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="resume"):
        train_adapters(backbone, data, config, tmp_path / "c.safetensors", resume=True, progress=False)


# ---------------------------------------------------------------------------- the authors' checkpoints


def test_authors_checkpoint_gives_the_same_maps(backbone, trained, tmp_path):
    authors = tmp_path / "mvtec_pretrained.pth"
    torch.save({AUTHORS_KEY: trained.adapters.state_dict()}, authors)
    from_authors = load_adapters(authors, backbone.spec)
    from_ours = load_adapters(trained.path, backbone.spec)
    taps = backbone(torch.stack([to_input(blob_defect(7, SIZE)[0], SIZE, backbone.preprocessing)])).taps
    text = class_text(backbone, ["widget"])[0]
    with torch.no_grad():
        torch.testing.assert_close(zero_shot_maps(from_authors, taps, text, SIZE),
                                   zero_shot_maps(from_ours, taps, text, SIZE))


def test_pickles_that_are_not_plain_tensors_are_refused(backbone, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({AUTHORS_KEY: {"fc.0.weight": np.zeros(3)}, "obj": Sample(None, 0, None, "good", "x")}, path)
    with pytest.raises(IncompatibleAdaptersError, match="weights_only"):
        load_adapters(path, backbone.spec)


# ---------------------------------------------------------------------------- compatibility


def _state(dims, embed):
    return TapAdapters(dims, embed).state_dict()


def test_adapters_for_another_backbone_are_refused(tiny_dir, trained):
    other_taps = create_backbone(tiny_dir, image_size=SIZE, taps=(2, 4)).spec
    with pytest.raises(IncompatibleAdaptersError, match=r"taps \(1, 2, 3, 4\).*taps \(2, 4\)"):
        load_adapters(trained.path, other_taps)
    spec = create_backbone(tiny_dir, image_size=SIZE).spec
    with pytest.raises(IncompatibleAdaptersError, match="widths"):
        adapters_from_state(_state([TINY_WIDTH] * 4, TINY_EMBED + 1), spec)
    with pytest.raises(IncompatibleAdaptersError, match="widths"):
        adapters_from_state(_state([TINY_WIDTH] * 3, TINY_EMBED), spec)
    with pytest.raises(IncompatibleAdaptersError, match="fc.<i>.weight"):
        adapters_from_state({"linear.weight": torch.zeros(2, 2)}, spec)
    renamed = spec.__class__(**{**spec.__dict__, "name": "openai/clip-vit-base-patch16"})
    with pytest.raises(IncompatibleAdaptersError, match="backbone id differs.*convert-adapters"):
        load_adapters(trained.path, renamed)
    vision_only = spec.__class__(**{**spec.__dict__, "kind": "efficientnet-lite2", "embed_dim": None})
    with pytest.raises(IncompatibleAdaptersError, match="text space"):
        load_adapters(trained.path, vision_only)
    # A different input size is not a different backbone: the layers are per token.
    load_adapters(trained.path, create_backbone(tiny_dir, image_size=48).spec)


def test_bundle_carries_its_adapters(tiny_dir, trained, tmp_path):
    from vandal.bundle import CONFIG_FILE
    from vandal.detector import Detector

    from synthetic import texture

    references = [texture(300 + i, SIZE) for i in range(2)]
    detector = Detector(backbone=tiny_dir, image_size=SIZE, class_name="widget", adapters=str(trained.path), device="cpu",
                        progress=False).fit(references)
    detector.save(str(tmp_path / "bundle"))
    saved = json.loads((tmp_path / "bundle" / CONFIG_FILE).read_text())["sources"]
    assert {"name": "text", "meta": {"class_name": "widget", "adapters": True}} in saved
    trained.path.rename(tmp_path / "moved.safetensors")  # the bundle must not need the file any more
    try:
        loaded = Detector.load(str(tmp_path / "bundle"), device="cpu", progress=False)
        image = blob_defect(9, SIZE)[0]
        a, b = detector.predict(image)[0], loaded.predict(image)[0]
        np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, atol=1e-6)
        assert a.pred_score == pytest.approx(b.pred_score)
        plain = Detector(backbone=tiny_dir, image_size=SIZE, class_name="widget", device="cpu", progress=False).fit(references)
        assert not np.allclose(plain.predict(image)[0].anomaly_map, a.anomaly_map, atol=1e-3)
        refitted = loaded.fit(references)  # refitting a loaded detector keeps the adapters it carries
        np.testing.assert_allclose(refitted.predict(image)[0].anomaly_map, a.anomaly_map, atol=1e-5)
    finally:
        (tmp_path / "moved.safetensors").rename(trained.path)
