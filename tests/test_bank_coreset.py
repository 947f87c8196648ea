"""Many references: a bank reduced to a coreset budget keeps each row's owner, so leave-one-out is a
row selection on the one bank; coreset=None (and a bank within budget) stays exactly as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vandal.config import ConfigError
from vandal.memory.bank import BankSet

VIEWS, SIDE, WIDTH = 3, 4, 8  # each reference: 3 views of a 4 x 4 grid of 8-wide tokens


def references(count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``count`` references, tokens per key ``[VIEWS, SIDE, SIDE, WIDTH]``; reference i's tokens lie
    around its own axis, so no two references share a row."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        centre = 4 * torch.eye(WIDTH)[i % WIDTH] * (1 + i // WIDTH)
        out.append({key: centre + torch.randn(VIEWS, SIDE, SIDE, WIDTH, generator=gen)
                    for key in ("tap0.r1", "tap1.r1")})
    return out


def filled(refs: list[dict[str, torch.Tensor]], coreset: int | None) -> BankSet:
    banks = BankSet(coreset)
    for tokens in refs:
        banks.add(tokens)
    banks.finish()
    return banks


def distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def own_rows(tokens: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    return F.normalize(tokens[key].reshape(-1, WIDTH).float(), dim=-1)


def test_no_coreset_keeps_every_row_in_reference_order():
    refs = references(3)
    banks = filled(refs, None)
    for key, bank in banks.banks.items():
        assert torch.equal(bank.features, torch.cat([own_rows(t, key) for t in refs]))
        assert banks.rows[key] == [VIEWS * SIDE * SIDE] * 3
        left = banks.without(1)[key].features
        assert torch.equal(left, torch.cat([own_rows(refs[0], key), own_rows(refs[2], key)]))


def test_a_bank_within_its_budget_is_untouched():
    refs = references(3)
    plain, roomy = filled(refs, None), filled(refs, 3 * VIEWS)  # budget = every view of the 3 references
    for key in plain.banks:
        assert torch.equal(plain.banks[key].features, roomy.banks[key].features)
        assert plain.rows[key] == roomy.rows[key]


def test_coreset_reduces_each_bank_to_its_budget_and_tracks_owners():
    refs = references(6)
    banks = filled(refs, 2)
    budget = 2 * SIDE * SIDE
    for key, bank in banks.banks.items():
        assert len(bank) == budget and sum(banks.rows[key]) == budget and len(banks.rows[key]) == 6
        owners = banks.owners(key)
        assert torch.equal(owners, torch.sort(owners).values), "rows stay grouped by reference"
        assert set(owners.tolist()) == set(range(6)), "far-apart references each keep rows"
        assert_traced(banks, refs, key)


def assert_traced(banks: BankSet, refs: list[dict[str, torch.Tensor]], key: str) -> None:
    """Every kept row is its owner's row at its recorded origin (the view and place it came from)."""
    origins = banks.origins[key]
    assert len(origins) == len(banks.banks[key])
    for row, owner, origin in zip(banks.banks[key].features, banks.owners(key).tolist(), origins.tolist(), strict=True):
        assert torch.equal(own_rows(refs[owner], key)[origin], row), "row credited to the wrong owner or place"


@pytest.mark.parametrize("index", [0, 3, 5])
def test_leave_one_out_selects_the_other_references_kept_rows(index):
    refs = references(6)
    banks = filled(refs, 2)
    left = banks.without(index)
    for key, bank in banks.banks.items():
        others = banks.owners(key) != index
        assert torch.equal(left[key].features, bank.features[others]), "a selection of the kept rows, not a rebuild"
        theirs = own_rows(refs[index], key)
        # No row of the left-out reference remains: its nearest bank row is never itself.
        assert float(distances(theirs, left[key].features).min()) > 1e-3
        assert float(distances(bank.features[~others], theirs).min(dim=1).values.max()) < 1e-6


def test_adding_references_after_finish_stays_within_the_budget():
    refs = references(8)
    banks = filled(refs[:5], 2)
    for tokens in refs[5:]:
        banks.add(tokens)
    banks.finish()
    for key, bank in banks.banks.items():
        assert len(bank) == 2 * SIDE * SIDE and len(banks.rows[key]) == 8
        assert_traced(banks, refs, key)


def test_one_reference_keeps_the_places_of_its_kept_rows():
    refs = references(1)
    banks = filled(refs, 1)  # 3 views cut to one view's rows
    for key, bank in banks.banks.items():
        assert len(bank) == SIDE * SIDE
        assert_traced(banks, refs, key)


def test_saved_rows_restore_the_provenance_and_bad_rows_are_refused():
    banks = filled(references(6), 2)
    again = BankSet(2)
    again.load(banks.state_dict(), banks.units, "cpu", banks.rows)
    assert again.rows == banks.rows
    for key in banks.banks:
        assert torch.equal(again.without(2)[key].features, banks.without(2)[key].features)
    wrong = {key: [r + 1 for r in rows] for key, rows in banks.rows.items()}
    with pytest.raises(ValueError, match="reference_rows"):
        BankSet(2).load(banks.state_dict(), banks.units, "cpu", wrong)
    with pytest.raises(ValueError, match="whole number"):  # a reduced bank cannot load without its rows
        BankSet(2).load(banks.state_dict(), banks.units, "cpu")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_a_bad_budget_is_refused_with_its_field_name(bad):
    with pytest.raises(ValueError, match="memory.coreset"):
        BankSet(bad)


def test_a_budget_below_one_is_a_config_error():
    from vandal.detector import Detector

    with pytest.raises(ConfigError, match="memory.coreset must be >= 1"):
        Detector(coreset=0)


@pytest.fixture(scope="module")
def reduced(textures):
    from vandal.detector import Detector

    refs, _ = textures
    return Detector(augment=True, coreset=2, texture="off", image_size=128, progress=False, device="cpu").fit(refs)


def test_detector_with_a_coreset_saves_and_loads_the_same_scores(reduced, textures, tmp_path):
    from vandal.detector import Detector

    refs, tests = textures
    memory = reduced.sources_[0]
    assert memory.name == "memory"
    for key, bank in memory.banks.banks.items():  # 2 references x 11 views reduced to 2 views' rows
        side = 16 if key.startswith("tap0") else 8
        assert len(bank) == 2 * side * side and len(memory.banks.rows[key]) == 2
    reduced.save(str(tmp_path / "model"))
    loaded = Detector.load(str(tmp_path / "model"), device="cpu", progress=False)
    images = [image for image, _ in tests[:2]]
    for a, b in zip(reduced.predict(images), loaded.predict(images), strict=True):
        assert a.pred_score == pytest.approx(b.pred_score, abs=1e-6)
        assert np.allclose(a.anomaly_map, b.anomaly_map, atol=1e-6)
    assert loaded.sources_[0].banks.rows == memory.banks.rows
    assert not loaded.sources_[0].banks.origins, "places of a loaded coreset are not saved"
    loaded.add_references(refs[:1])
    for key, bank in loaded.sources_[0].banks.banks.items():
        assert len(bank) == len(memory.banks.banks[key]) and len(loaded.sources_[0].banks.rows[key]) == 3


def test_one_reference_with_a_coreset_is_held_out_from_its_own_places(textures):
    from vandal.detector import Detector

    refs, _ = textures
    detector = Detector(augment=True, coreset=4, texture="off", image_size=128, progress=False, device="cpu").fit(refs[:1])
    memory = detector.sources_[0]
    assert len(memory.banks.banks["tap0.r3"]) == 4 * 16 * 16  # 11 views cut to 4 views' rows
    assert detector.calibration_.method.endswith("(leave-place-out)")
    assert detector.calibration_.pixel_threshold > 0
