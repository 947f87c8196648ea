"""Dataset loaders, masks, plain-folder listing and shot sampling on tiny generated trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vandal.data.datasets import (
    MVTEC_CATEGORIES,
    VISA_CATEGORIES,
    CategorySplit,
    Sample,
    list_images,
    load_dataset,
    load_folder,
    load_mask,
    load_mvtec,
    load_visa,
)
from vandal.data.sampling import sample_shots

REAL_BOTTLE = Path("/work/shared/data/mvtec_ad/bottle")


def _png(path: Path, array: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((8, 8), np.uint8) if array is None else array
    Image.fromarray(arr).save(path)
    return path


def _mvtec_category(
    root: Path, name: str, n_train: int = 3, n_good: int = 2, n_bad: int = 2
) -> Path:
    cat = root / name
    for i in range(n_train):
        _png(cat / "train" / "good" / f"{i:03d}.png")
    for i in range(n_good):
        _png(cat / "test" / "good" / f"{i:03d}.png")
    for i in range(n_bad):
        _png(cat / "test" / "crack" / f"{i:03d}.png")
        mask = np.zeros((8, 8), np.uint8)
        mask[2:4, 2:4] = 255
        _png(cat / "ground_truth" / "crack" / f"{i:03d}_mask.png", mask)
    return cat


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    root = tmp_path / "mvtec"
    _mvtec_category(root, "widget")
    _mvtec_category(root, "bolt", n_train=4, n_good=1, n_bad=3)
    (root / "readme.txt").write_text("not a category")  # loose files beside categories
    return root


# --------------------------------------------------------------------------- MVTec


def test_category_lists() -> None:
    assert len(MVTEC_CATEGORIES) == 15 and "bottle" in MVTEC_CATEGORIES
    assert len(VISA_CATEGORIES) == 12 and "pipe_fryum" in VISA_CATEGORIES


def test_load_mvtec_two_categories(mvtec_root: Path) -> None:
    data = load_mvtec(mvtec_root)
    assert list(data) == ["bolt", "widget"]  # name order
    widget = data["widget"]
    assert isinstance(widget, CategorySplit) and widget.category == "widget"
    assert [s.path.name for s in widget.train] == ["000.png", "001.png", "002.png"]
    assert all(s.label == 0 and s.mask_path is None for s in widget.train)
    assert all(s.defect_type == "good" for s in widget.train)
    bad = [s for s in widget.test if s.label == 1]
    good = [s for s in widget.test if s.label == 0]
    assert len(bad) == 2 and len(good) == 2
    assert bad[0] == Sample(
        mvtec_root / "widget/test/crack/000.png",
        1,
        mvtec_root / "widget/ground_truth/crack/000_mask.png",
        "crack",
        "widget",
    )
    assert all(s.mask_path is None and s.defect_type == "good" for s in good)
    assert (len(data["bolt"].train), len(data["bolt"].test)) == (4, 4)


def test_load_mvtec_selects_categories_in_order_asked(mvtec_root: Path) -> None:
    assert list(load_mvtec(mvtec_root, ["widget", "bolt"])) == ["widget", "bolt"]
    assert list(load_mvtec(mvtec_root, "bolt")) == ["bolt"]


def test_load_mvtec_missing_category_lists_found(mvtec_root: Path) -> None:
    with pytest.raises(ValueError, match=r"\['gear'\].*found: \['bolt', 'widget'\]"):
        load_mvtec(mvtec_root, ["widget", "gear"])


def test_load_mvtec_wrong_root(tmp_path: Path, mvtec_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mvtec(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no category folders.*Point root"):
        load_mvtec(tmp_path / "empty")
    # A category folder given as root: point the user at load_folder or the parent.
    with pytest.raises(ValueError, match="looks like one category.*load_folder"):
        load_mvtec(mvtec_root / "widget")


def test_anomalous_image_without_mask(mvtec_root: Path) -> None:
    (mvtec_root / "widget/ground_truth/crack/001_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 anomalous.*crack/001\.png.*_mask\.png"):
        load_mvtec(mvtec_root)
    load_mvtec(mvtec_root, ["bolt"])  # other categories are unaffected


def test_mask_without_image(mvtec_root: Path) -> None:
    (mvtec_root / "widget/test/crack/001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 mask.*001_mask\.png"):
        load_mvtec(mvtec_root)


def test_masks_of_a_defect_without_test_folder(mvtec_root: Path) -> None:
    _png(mvtec_root / "widget/ground_truth/scratch/000_mask.png")
    with pytest.raises(FileNotFoundError, match=r"scratch/000_mask\.png"):
        load_mvtec(mvtec_root)


def test_mvtec_extensions_and_ignored_files(mvtec_root: Path) -> None:
    train = mvtec_root / "widget/train/good"
    Image.new("RGB", (8, 8)).save(train / "100.JPG")
    Image.new("RGB", (8, 8)).save(train / "101.bmp")
    (train / "notes.txt").write_text("x")
    (train / ".DS_Store").write_bytes(b"\0")
    names = [s.path.name for s in load_mvtec(mvtec_root)["widget"].train]
    assert names == ["000.png", "001.png", "002.png", "100.JPG", "101.bmp"]


def test_mask_named_like_its_image(tmp_path: Path) -> None:
    # BTAD-style layouts name masks after the image, without "_mask".
    cat = _mvtec_category(tmp_path, "part", n_bad=1)
    (cat / "ground_truth/crack/000_mask.png").rename(cat / "ground_truth/crack/000.png")
    (bad,) = [s for s in load_folder(cat)["part"].test if s.label == 1]
    assert bad.mask_path == cat / "ground_truth/crack/000.png"


def test_missing_train_good(mvtec_root: Path) -> None:
    for p in (mvtec_root / "widget/train/good").iterdir():
        p.unlink()
    (mvtec_root / "widget/train/good").rmdir()
    with pytest.raises(FileNotFoundError, match="train/good"):
        load_mvtec(mvtec_root)


def test_load_folder_root_is_a_category(mvtec_root: Path) -> None:
    data = load_folder(mvtec_root / "bolt")
    assert list(data) == ["bolt"] and len(data["bolt"].test) == 4
    assert list(load_folder(mvtec_root)) == ["bolt", "widget"]
    with pytest.raises(ValueError, match="not found"):
        load_folder(mvtec_root / "bolt", ["widget"])


# --------------------------------------------------------------------------- VisA


def _visa_root(tmp_path: Path) -> Path:
    root = tmp_path / "visa"
    rows = ["object,split,label,image,mask"]
    for obj in ("candle", "pcb1"):
        for i in range(3):
            rows.append(f"{obj},train,normal,{obj}/Data/Images/Normal/{i:03d}.JPG,")
        rows.append(f"{obj},test,normal,{obj}/Data/Images/Normal/100.JPG,")
        for i in range(2):
            rows.append(
                f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/{i:03d}.JPG,"
                f"{obj}/Data/Masks/Anomaly/{i:03d}.png"
            )
    for row in rows[1:]:
        for rel in row.split(",")[3:]:
            if rel:
                _png(root / rel)
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv/1cls.csv").write_text("\n".join(rows) + "\n")
    return root


def test_load_visa(tmp_path: Path) -> None:
    root = _visa_root(tmp_path)
    data = load_visa(root)
    assert list(data) == ["candle", "pcb1"]
    candle = data["candle"]
    assert len(candle.train) == 3 and all(s.label == 0 for s in candle.train)
    assert [s.label for s in candle.test] == [0, 1, 1]
    assert candle.test[0].mask_path is None and candle.test[0].defect_type == "good"
    assert candle.test[1].mask_path == root / "candle/Data/Masks/Anomaly/000.png"
    assert candle.test[1].defect_type == "anomaly" and candle.test[1].category == "candle"
    assert list(load_dataset("visa", root, ["pcb1"])) == ["pcb1"]


def test_visa_train_anomalies_are_not_references(tmp_path: Path) -> None:
    root = _visa_root(tmp_path)
    with open(root / "split_csv/1cls.csv", "a") as f:
        f.write(
            "candle,train,anomaly,candle/Data/Images/Anomaly/000.JPG,"
            "candle/Data/Masks/Anomaly/000.png\n"
        )
    assert len(load_visa(root)["candle"].train) == 3


def test_visa_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"split_csv/1cls\.csv not found"):
        load_visa(tmp_path)


def test_visa_missing_referenced_file(tmp_path: Path) -> None:
    root = _visa_root(tmp_path)
    (root / "pcb1/Data/Masks/Anomaly/001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 file.*pcb1/Data/Masks/Anomaly/001\.png"):
        load_visa(root)
    assert list(load_visa(root, "candle")) == ["candle"]  # only selected files are checked


def test_visa_anomaly_without_mask(tmp_path: Path) -> None:
    root = _visa_root(tmp_path)
    csv_path = root / "split_csv/1cls.csv"
    lines = csv_path.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ","  # first candle anomaly row, mask emptied
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"1 anomaly row.*line 6"):
        load_visa(root)


def test_visa_bad_columns_and_missing_category(tmp_path: Path) -> None:
    root = _visa_root(tmp_path)
    with pytest.raises(ValueError, match=r"\['fryum'\].*found: \['candle', 'pcb1'\]"):
        load_visa(root, ["fryum"])
    (root / "split_csv/1cls.csv").write_text("object,split,image\ncandle,train,x.png\n")
    with pytest.raises(ValueError, match=r"lacks column.*'label'"):
        load_visa(root)


def test_load_dataset_dispatch(mvtec_root: Path) -> None:
    assert list(load_dataset("MVTec", mvtec_root)) == ["bolt", "widget"]
    assert list(load_dataset("folder", mvtec_root / "widget")) == ["widget"]
    with pytest.raises(ValueError, match="unknown dataset kind 'btad'"):
        load_dataset("btad", mvtec_root)


# --------------------------------------------------------------------------- masks


def test_load_mask_nonzero_is_true(tmp_path: Path) -> None:
    arr = np.zeros((4, 6), np.uint8)
    arr[1, 2] = 1  # any non-zero value counts, not only 255
    arr[3, 5] = 255
    mask = load_mask(_png(tmp_path / "m.png", arr))
    assert mask.dtype == bool and mask.shape == (4, 6)
    assert mask.sum() == 2 and mask[1, 2] and mask[3, 5]
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[0, 0, 2] = 200
    assert load_mask(_png(tmp_path / "rgb.png", rgb)).sum() == 1
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 3] = 255  # opaque alpha must not mark every pixel
    assert load_mask(_png(tmp_path / "rgba.png", rgba)).sum() == 0


def test_load_mask_resize_is_bilinear_then_half(tmp_path: Path) -> None:
    # Downsampling 2x2 -> 1x1 averages the block: 3 of 4 anomalous (0.75) stays, 1 of 4 (0.25)
    # and 2 of 4 (0.5, not > 0.5) vanish.
    for n_on, expected in ((1, False), (2, False), (3, True)):
        arr = np.zeros(4, np.uint8)
        arr[:n_on] = 255
        path = _png(tmp_path / f"m{n_on}.png", arr.reshape(2, 2))
        assert load_mask(path, size=1)[0, 0] == expected
    arr = np.zeros((4, 4), np.uint8)
    arr[:, :2] = 255
    up = load_mask(_png(tmp_path / "half.png", arr), size=(8, 16))  # (height, width)
    assert up.shape == (8, 16) and up.dtype == bool
    assert up[:, :7].all() and not up[:, 9:].any()


def test_load_mask_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read mask.*broken.png"):
        load_mask(bad)


# --------------------------------------------------------------------------- plain folders


def test_list_images_counts_ignored(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "c.TIFF"):
        Image.new("L", (4, 4)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "labels.csv").write_text("x")
    _png(tmp_path / "sub" / "deep.png")
    paths, ignored = list_images(tmp_path)
    assert [p.name for p in paths] == ["a.jpg", "b.png", "c.TIFF"] and ignored == 2
    paths, ignored = list_images(str(tmp_path), recursive=True)
    assert [p.name for p in paths] == ["a.jpg", "b.png", "c.TIFF", "deep.png"] and ignored == 2


def test_list_images_mix_of_files_and_folders(tmp_path: Path) -> None:
    one = _png(tmp_path / "x" / "one.png")
    _png(tmp_path / "y" / "two.png")
    txt = tmp_path / "x" / "readme.md"
    txt.write_text("x")
    paths, ignored = list_images([tmp_path / "y", one, one, txt])
    assert paths == [tmp_path / "y" / "two.png", one] and ignored == 1


def test_list_images_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no images found in .*empty \(looked for \.png, \.jpg"):
        list_images(tmp_path / "empty")
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images found"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        list_images([tmp_path / "missing.png"])


# --------------------------------------------------------------------------- shots


def _train(n: int) -> list[Sample]:
    return [Sample(Path(f"{i:03d}.png"), 0, None, "good", "widget") for i in range(n)]


def test_sample_shots_deterministic_without_replacement() -> None:
    train = _train(20)
    assert sample_shots(train, 4, seed=0) == sample_shots(train, 4, seed=0)
    everything = sample_shots(train, 20, seed=3)
    assert len(set(everything)) == 20  # no repeats even when k == len(train)
    assert sample_shots(train, 4, seed=0) != sample_shots(train, 4, seed=1)
    draws = {tuple(s.path for s in sample_shots(train, 4, seed)) for seed in range(5)}
    assert len(draws) == 5
    # Nested across k: the 2-shot set is the start of the 4-shot set for the same seed.
    assert sample_shots(train, 4, seed=2)[:2] == sample_shots(train, 2, seed=2)


def test_sample_shots_errors() -> None:
    with pytest.raises(ValueError, match=r"k=5.*'widget' has only 3"):
        sample_shots(_train(3), 5, seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        sample_shots(_train(3), 0, seed=0)
    with pytest.raises(TypeError, match="integer"):
        sample_shots(_train(3), 1.5, seed=0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- real data


def test_real_bottle_counts() -> None:
    if not REAL_BOTTLE.is_dir():
        pytest.skip(f"{REAL_BOTTLE} not present")
    data = load_folder(REAL_BOTTLE)
    bottle = data["bottle"]
    assert len(bottle.train) == 209
    assert len(bottle.test) == 83
    assert sum(s.label for s in bottle.test) == 63
    defects = {s.defect_type for s in bottle.test}
    assert defects == {"good", "broken_large", "broken_small", "contamination"}
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in bottle.test if s.label)
    mask = load_mask(bottle.test[0].mask_path or bottle.test[-1].mask_path, size=518)
    assert mask.shape == (518, 518) and mask.any()
    assert list(load_mvtec(REAL_BOTTLE.parent)) == ["bottle"]


@pytest.mark.parametrize("escape", ["/etc/passwd", "../outside.png", "candle/../../outside.png",
                                    "candle\\..\\..\\outside.png", "C:\\data\\x.png", "\\\\server\\share\\x.png"])
@pytest.mark.parametrize("column", ["image", "mask"])
def test_visa_paths_stay_inside_the_root(tmp_path: Path, escape: str, column: str) -> None:
    root = _visa_root(tmp_path)
    _png(tmp_path / "outside.png")  # exists, so only the confinement can refuse it
    csv_path = root / "split_csv/1cls.csv"
    lines = csv_path.read_text().splitlines()
    fields = lines[5].split(",")  # line 6: the first candle anomaly row (image and mask)
    fields[3 if column == "image" else 4] = escape
    lines[5] = ",".join(fields)
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"1cls\.csv line 6, column {column}: path .* leaves the dataset root"):
        load_visa(root)
    assert list(load_visa(root, "pcb1")) == ["pcb1"]  # rows of other categories are not read
