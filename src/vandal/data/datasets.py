"""Dataset layouts as lists of image paths (docs/method.md §7).

Loaders never decode images: they return :class:`Sample` records (path, label, mask path) split
into normal references (``train``) and the test set, one :class:`CategorySplit` per category.
Layouts: MVTec AD (and any folder in its layout), VisA (``split_csv/1cls.csv``), and a plain
folder of unlabeled images for prediction (:func:`list_images`). Masks are read by
:func:`~vandal.data.masks.load_mask` as boolean ``[H, W]`` arrays.

Errors name the offending path and say how to fix it: a wrong root is the most common mistake.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from .images import IMAGE_EXTENSIONS, is_image_file
from .masks import load_mask, resize_mask  # noqa: F401 (re-exported: callers import masks from here)

PathLike = str | os.PathLike


MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip

VISA_CATEGORIES: tuple[str, ...] = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)  # fmt: skip

NORMAL, ANOMALOUS = 0, 1
_EXAMPLES = 3  # how many offending paths an error message quotes


@dataclass(frozen=True)
class Sample:
    """One image: ``label`` 0 normal / 1 anomalous; ``mask_path`` None means an all-zero mask."""

    path: Path
    label: int
    mask_path: Path | None
    defect_type: str
    category: str


@dataclass
class CategorySplit:
    """Normal reference images (``train``) and the test set of one category."""

    category: str
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def _visible_files(folder: Path) -> list[Path]:
    # Hidden files (.DS_Store, ._foo.png from macOS archives) are never images we want.
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return [p for p in _visible_files(folder) if is_image_file(p)]


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _quote(paths: list, n: int = _EXAMPLES) -> str:
    shown = ", ".join(str(p) for p in paths[:n])
    return shown + (f" (and {len(paths) - n} more)" if len(paths) > n else "")


def _existing_root(root: PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"dataset root {path} does not exist or is not a folder")
    return path


def _select(found: list[str], requested: str | Iterable[str] | None, where: Path) -> list[str]:
    """The requested categories (in the order asked), or all found ones (sorted)."""
    if requested is None:
        return list(found)
    names = [requested] if isinstance(requested, str) else list(dict.fromkeys(requested))
    missing = [c for c in names if c not in found]
    if missing:
        raise ValueError(
            f"categories {missing} not found in {where}; found: {found or 'none'}. "
            "Check the spelling or point root at the folder that holds them."
        )
    return names


# --------------------------------------------------------------------------- MVTec layout


def _is_category_dir(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _mask_index(folder: Path) -> dict[str, Path]:
    """Image stem -> mask path for a ``ground_truth/<defect>`` folder.

    MVTec names masks ``<stem>_mask.png``; some datasets in its layout (BTAD) reuse the image's
    stem, so both are accepted, the ``_mask`` form winning if both exist.
    """
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for mask in _images_in(folder):
        has_suffix = mask.stem.endswith("_mask")
        key = mask.stem[: -len("_mask")] if has_suffix else mask.stem
        if key not in index or has_suffix:
            index[key] = mask
    return index


def _load_mvtec_category(cat_dir: Path, name: str) -> CategorySplit:
    train_dir = cat_dir / "train" / "good"
    if not train_dir.is_dir():
        raise FileNotFoundError(
            f"{train_dir} is missing: the MVTec layout keeps normal reference images in "
            "<category>/train/good/. Create it and put the anomaly-free images there."
        )
    train_paths = _images_in(train_dir)
    if not train_paths:
        looked = ", ".join(IMAGE_EXTENSIONS)
        raise ValueError(f"no images found in {train_dir} (looked for {looked})")
    train = [Sample(p, NORMAL, None, "good", name) for p in train_paths]

    gt_dir = cat_dir / "ground_truth"
    test: list[Sample] = []
    unmasked: list[Path] = []
    orphans: list[Path] = []
    defect_dirs = _subdirs(cat_dir / "test")
    for defect_dir in defect_dirs:
        images = _images_in(defect_dir)
        if defect_dir.name == "good":
            test += [Sample(p, NORMAL, None, "good", name) for p in images]
            continue
        masks = _mask_index(gt_dir / defect_dir.name)
        for p in images:
            if p.stem in masks:
                test.append(Sample(p, ANOMALOUS, masks[p.stem], defect_dir.name, name))
            else:
                unmasked.append(p)
        stems = {p.stem for p in images}
        orphans += [m for stem, m in masks.items() if stem not in stems]
    # Masks of a defect type with no test folder at all are orphans too; ground_truth/good
    # (all-zero masks some tools write) is harmless and ignored.
    tested = {d.name for d in defect_dirs}
    if gt_dir.is_dir():
        for gt_defect in _subdirs(gt_dir):
            if gt_defect.name != "good" and gt_defect.name not in tested:
                orphans += list(_mask_index(gt_defect).values())

    if unmasked:
        raise FileNotFoundError(
            f"{len(unmasked)} anomalous test image(s) in {cat_dir} have no mask: "
            f"{_quote(unmasked)}. Expected ground_truth/<defect>/<name>_mask.png for each "
            "test/<defect>/<name>.png; add the masks, or move normal images to test/good."
        )
    if orphans:
        raise FileNotFoundError(
            f"{len(orphans)} mask(s) in {gt_dir} have no test image: {_quote(orphans)}. "
            "Expected test/<defect>/<name>.<ext> for each ground_truth/<defect>/<name>_mask.png; "
            "restore the images or remove the stray masks."
        )
    if not test:
        raise ValueError(
            f"no test images found under {cat_dir / 'test'}: expected test/good/ and/or "
            "test/<defect>/ folders of images."
        )
    return CategorySplit(name, train, test)


def load_mvtec(
    root: PathLike, categories: str | Iterable[str] | None = None
) -> dict[str, CategorySplit]:
    """MVTec AD layout: ``<root>/<category>/{train/good, test/<defect|good>, ground_truth}``.

    Categories are the subfolders holding ``train/`` and ``test/``; ``categories`` picks some
    (in the order given), otherwise all are loaded in name order.
    """
    root = _existing_root(root)
    found = {d.name: d for d in _subdirs(root) if _is_category_dir(d)}
    if not found:
        hint = (
            f"{root} itself looks like one category: use load_folder (kind 'folder') or "
            "point root at its parent."
            if _is_category_dir(root)
            else "Point root at the folder holding <category>/train/good and <category>/test "
            "(e.g. .../mvtec_ad, not .../mvtec_ad/bottle/train)."
        )
        raise ValueError(f"no category folders (with train/ and test/) in {root}. {hint}")
    names = _select(sorted(found), categories, root)
    return {n: _load_mvtec_category(found[n], n) for n in names}


def load_folder(
    root: PathLike, categories: str | Iterable[str] | None = None
) -> dict[str, CategorySplit]:
    """Any folder in MVTec layout; ``root`` may also be a single category folder itself."""
    root = _existing_root(root)
    if _is_category_dir(root):
        _select([root.name], categories, root.parent)
        return {root.name: _load_mvtec_category(root, root.name)}
    return load_mvtec(root, categories)


# --------------------------------------------------------------------------- VisA layout

_VISA_COLUMNS = ("object", "split", "label", "image", "mask")
_VISA_LABELS = {"normal": NORMAL, "anomaly": ANOMALOUS}


def _inside_root(root: Path, relative: str, where: str) -> Path:
    """``root / relative`` for a csv path that stays inside ``root``.

    Absolute paths, drive letters and ``..`` (with either separator) are refused: a dataset csv
    must not reach files elsewhere on the machine. The check is on the text, not on resolved
    links, so a dataset whose category folders are symlinks elsewhere still loads.
    """
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.anchor or ".." in posix.parts or ".." in windows.parts:
        raise ValueError(
            f"{where}: path {relative!r} leaves the dataset root {root}; paths in the csv must be relative "
            "to the root, without '..', a leading '/' or a drive. Fix that row, or move the file under the root."
        )
    return root / relative


def _visa_rows(csv_path: Path, split_csv: str) -> list[dict[str, str]]:
    """The rows of VisA's split csv, stripped, with every expected column present."""
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path} not found: the VisA root must hold {split_csv} (shipped with VisA's "
            "split_csv folder). Point root at the folder that holds split_csv/."
        )
    # utf-8-sig: a csv saved by a spreadsheet starts with a byte-order mark.
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        absent = [c for c in _VISA_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(
                f"{csv_path} lacks column(s) {absent}; expected {','.join(_VISA_COLUMNS)}"
            )
        return [{k: (row[k] or "").strip() for k in _VISA_COLUMNS} for row in reader]


def load_visa(
    root: PathLike,
    categories: str | Iterable[str] | None = None,
    split_csv: str = "split_csv/1cls.csv",
) -> dict[str, CategorySplit]:
    """VisA from ``<root>/split_csv/1cls.csv`` (columns ``object,split,label,image,mask``).

    ``train`` rows labelled normal are the references; ``test`` rows are the test set. Paths in
    the csv are relative to ``root``. Only the selected categories' files are checked, so a
    partial download of a few categories loads.
    """
    root = _existing_root(root)
    csv_path = root / split_csv
    rows = _visa_rows(csv_path, split_csv)
    names = _select(sorted({r["object"] for r in rows}), categories, csv_path)
    splits = {n: CategorySplit(n) for n in names}
    missing: list[Path] = []
    unmasked: list[str] = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if row["object"] not in splits:
            continue
        if row["label"] not in _VISA_LABELS or row["split"] not in ("train", "test"):
            raise ValueError(
                f"{csv_path} line {line}: split {row['split']!r} / label {row['label']!r}; "
                "expected split train|test and label normal|anomaly"
            )
        label = _VISA_LABELS[row["label"]]
        if row["split"] == "train" and label == ANOMALOUS:
            continue  # references must be anomaly-free
        image = _inside_root(root, row["image"], f"{csv_path} line {line}, column image")
        if not image.is_file():
            missing.append(image)
        mask = None
        if label == ANOMALOUS:
            if not row["mask"]:
                unmasked.append(f"line {line} ({row['image']})")
                continue
            mask = _inside_root(root, row["mask"], f"{csv_path} line {line}, column mask")
            if not mask.is_file():
                missing.append(mask)
        defect = "anomaly" if label == ANOMALOUS else "good"
        sample = Sample(image, label, mask, defect, row["object"])
        split = splits[row["object"]]
        (split.train if row["split"] == "train" else split.test).append(sample)

    if unmasked:
        raise ValueError(
            f"{len(unmasked)} anomaly row(s) in {csv_path} have an empty mask column: "
            f"{_quote(unmasked)}. Anomalous images need a mask path relative to {root}."
        )
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} file(s) listed in {csv_path} do not exist: {_quote(missing)}. "
            f"Paths in the csv are relative to {root}; check root, or download the missing "
            "categories (or select the present ones with categories=...)."
        )
    for split in splits.values():
        if not split.train or not split.test:
            raise ValueError(
                f"category {split.category!r} in {csv_path} has {len(split.train)} normal "
                f"train and {len(split.test)} test rows; both must be non-empty"
            )
    return splits


# --------------------------------------------------------------------------- dispatch

LOADERS: dict[str, Callable[..., dict[str, CategorySplit]]] = {
    "mvtec": load_mvtec,
    "visa": load_visa,
    "folder": load_folder,
}


def load_dataset(
    kind: str, root: PathLike, categories: str | Iterable[str] | None = None
) -> dict[str, CategorySplit]:
    """Load a dataset by layout name: ``"mvtec"``, ``"visa"`` or ``"folder"``."""
    loader = LOADERS.get(kind.lower())
    if loader is None:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {sorted(LOADERS)}")
    return loader(root, categories)


# --------------------------------------------------------------------------- plain folders


def _walk(folder: Path, exclude: list[Path]) -> list[Path]:
    """Visible files under ``folder`` and its subfolders (sorted by path), skipping ``exclude`` folders
    and earlier vandal runs' output folders (their overlays and masks are never inputs)."""
    from ..outputs.folder import MANIFEST

    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in exclude
                         and not (here / d / MANIFEST).is_file())
        found += [here / f for f in files if not f.startswith(".")]
    return sorted(found)


def list_images(
    folder_or_files: PathLike | Iterable[PathLike], recursive: bool = False, exclude: Iterable[PathLike] = ()
) -> tuple[list[Path], int]:
    """Image paths from folders and/or files, and how many non-image files were skipped.

    Folders are listed in name order (``recursive``: their subfolders too, by relative path, except
    the ``exclude`` folders, e.g. a run's own output folder); explicit files keep the order given.
    Duplicates are dropped. Raises ``FileNotFoundError`` for a path that does not exist and
    ``ValueError`` when no image is found.
    """
    if isinstance(folder_or_files, (str, os.PathLike)):
        folder_or_files = [folder_or_files]
    inputs = [Path(p).expanduser() for p in folder_or_files]
    skip = [Path(p).expanduser().resolve() for p in exclude]
    images: dict[Path, None] = {}  # an ordered set
    ignored = 0
    for item in inputs:
        if item.is_dir():
            files = _walk(item, skip) if recursive else _visible_files(item)
        elif item.is_file():
            files = [item]
        else:
            raise FileNotFoundError(f"{item} does not exist")
        for p in files:
            if is_image_file(p):
                images.setdefault(p)
            else:
                ignored += 1
    if not images:
        where = ", ".join(str(p) for p in inputs) or "(no paths given)"
        raise ValueError(
            f"no images found in {where} (looked for {', '.join(IMAGE_EXTENSIONS)}"
            f"{'' if recursive else '; subfolders are not searched: pass --recursive to include them'})"
        )
    return list(images), ignored
