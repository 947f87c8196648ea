"""SAM automatic masks through transformers: a grid of point prompts, one image embedding.

Follows segment-anything's `SamAutomaticMaskGenerator` (single crop layer): embed the image once,
prompt the mask decoder with a regular grid of points in batches, keep masks whose predicted IoU
and stability score pass, drop specks and background-sized masks, suppress duplicates.

transformers' own mask-generation pipeline cannot be used as is here: its NMS
(`post_process_for_mask_generation`) imports torchvision, and its `filter_masks` turns every mask
into RLE. We reuse what runs without torchvision (`generate_crop_boxes` for the prompt grid in
model coordinates, `post_process_masks` for un-padding and resizing) and do the rest ourselves.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..extras import require
from .base import DEFAULT_SAM_ID, ObjectMask, as_rgb, box_nms, deduplicate, drop_nested, mask_box


def stability_score(
    logits: torch.Tensor, mask_threshold: float = 0.0, offset: float = 1.0
) -> torch.Tensor:
    """SAM's stability score of mask logits (..., H, W) -> (...): IoU between the mask cut at
    threshold + offset and at threshold - offset. The first lies inside the second, so the IoU is
    a ratio of areas. A mask whose outline moves when the cut moves is unreliable. 0 when empty."""
    inter = (logits > mask_threshold + offset).flatten(-2).sum(-1, dtype=torch.int64)
    union = (logits > mask_threshold - offset).flatten(-2).sum(-1, dtype=torch.int64)
    # inter <= union, so clamping gives an empty mask 0 rather than segment-anything's NaN.
    return inter / union.clamp(min=1)


def load_sam(model: str, device: str | torch.device = "cpu", offline: bool = False):
    """(SamModel in eval mode on `device`, SamProcessor) from an HF id or a local directory.

    A local directory is read with `local_files_only`, so it never touches the network. If the
    directory holds no processor config, one is built matching the model's input size.
    """
    require("transformers", "transformers", "the SAM segmenter")
    from transformers import SamModel, SamProcessor

    local = os.path.isdir(model) or offline
    try:
        sam = SamModel.from_pretrained(model, local_files_only=local).to(device).eval()  # type: ignore[arg-type]
    except OSError as err:
        raise OSError(
            f"cannot load SAM weights {model!r} ({err}). Pass a local directory saved with "
            "save_pretrained, or use the weight-free create_segmenter('classical')."
        ) from err
    try:
        processor = SamProcessor.from_pretrained(model, local_files_only=local)
    except (OSError, ValueError):
        if not local:
            raise
        processor = _processor_for(sam.config)
    return sam, processor


def _processor_for(config):
    """A SamProcessor sized for `config` (input side, and low-res masks at 4x the embedding)."""
    from transformers import SamProcessor

    try:  # transformers >= 5 without torchvision: the PIL backend is the one that imports
        from transformers import SamImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import SamImageProcessor as ImageProcessor
    side = int(config.vision_config.image_size)
    mask_side = 4 * (side // int(config.vision_config.patch_size))
    image_processor = ImageProcessor(
        size={"longest_edge": side},
        pad_size={"height": side, "width": side},
        mask_size={"longest_edge": mask_side},
        mask_pad_size={"height": mask_side, "width": mask_side},
    )
    return SamProcessor(image_processor=image_processor)


class SamSegmenter:
    """Automatic object masks from a SAM checkpoint.

    Parameters
    ----------
    model: HF id (e.g. "facebook/sam-vit-base") or a local directory saved with save_pretrained.
    points_per_side: the prompt grid is points_per_side**2 points over the whole image.
    pred_iou_thresh: keep masks whose predicted IoU (SAM's own quality estimate) exceeds this.
    stability_score_thresh, stability_score_offset: keep masks whose stability score exceeds this.
        Either threshold <= 0 switches its filter off.
    box_nms_thresh: box IoU above which the lower-scoring mask is dropped (also applied to mask IoU).
    min_area_frac, max_area_frac: drop specks and background-sized masks (fractions of the image).
    nested_containment: drop a mask lying this much inside a larger kept one (parts of an
        object); None keeps parts.
    batch_size: point prompts per decoder call.
    """

    def __init__(
        self,
        model: str = DEFAULT_SAM_ID,
        points_per_side: int = 16,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        min_area_frac: float = 0.001,
        max_area_frac: float = 0.9,
        nested_containment: float | None = 0.9,
        mask_threshold: float = 0.0,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        offline: bool = False,
    ) -> None:
        self.model_name = model
        self.points_per_side = points_per_side
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.min_area_frac = min_area_frac
        self.max_area_frac = max_area_frac
        self.nested_containment = nested_containment
        self.mask_threshold = mask_threshold
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        self.model, self.processor = load_sam(model, self.device, offline)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> list[ObjectMask]:
        """(H, W, 3) uint8 -> objects, largest first; score = SAM's predicted IoU."""
        image = as_rgb(image)
        h, w = image.shape[:2]
        improc = self.processor.image_processor
        inputs = improc(images=image, return_tensors="pt")
        dtype = self.model.dtype
        # The expensive part, once per image; every prompt batch below reuses it.
        embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device, dtype))
        target = improc.size["longest_edge"]
        # Points (1, N, 1, 2) already scaled into the resized image's frame, as the processor does.
        _, points, _, labels = improc.generate_crop_boxes(
            image, target, crop_n_layers=0, points_per_crop=self.points_per_side
        )
        points = points.to(self.device, dtype)
        labels = labels.to(self.device)
        candidates: list[tuple[tuple[int, int, int, int], float, np.ndarray]] = []
        for start in range(0, points.shape[1], self.batch_size):
            out = self.model(
                image_embeddings=embeddings,
                input_points=points[:, start : start + self.batch_size],
                input_labels=labels[:, start : start + self.batch_size],
                multimask_output=True,
            )
            low_res = out.pred_masks[0].flatten(0, 1)  # (points * 3, h', w')
            scores = out.iou_scores[0].flatten().float()
            # Quality filter on low-resolution logits first: upsampling only the survivors keeps
            # memory bounded on megapixel images. A threshold <= 0 disables it, as in
            # segment-anything (predicted IoU is an unbounded regression output).
            keep = scores > self.pred_iou_thresh
            if self.pred_iou_thresh <= 0:
                keep = torch.ones_like(keep)
            candidates += self._upsample_and_filter(low_res[keep], scores[keep], inputs, (h, w))
        return self._select(candidates, (h, w))

    def _upsample_and_filter(self, low_res, scores, inputs, hw, chunk: int = 16):
        """Low-res logits (K, h', w') -> [(box, score, mask cropped to box)] passing stability
        and area filters at full resolution."""
        improc = self.processor.image_processor
        h, w = hw
        lo = max(self.min_area_frac * h * w, 1)
        hi = self.max_area_frac * h * w
        found = []
        for i in range(0, low_res.shape[0], chunk):
            logits = improc.post_process_masks(
                [low_res[i : i + chunk][None].float()],
                inputs["original_sizes"],
                inputs["reshaped_input_sizes"],
                binarize=False,
            )[0][0]  # (k, H, W)
            stable = stability_score(logits, self.mask_threshold, self.stability_score_offset).tolist()
            masks = (logits > self.mask_threshold).cpu().numpy()
            for j in range(masks.shape[0]):
                if self.stability_score_thresh > 0 and stable[j] <= self.stability_score_thresh:
                    continue
                area = int(masks[j].sum())
                if not lo <= area <= hi:
                    continue
                box = mask_box(masks[j])
                crop = masks[j, box[1] : box[3], box[0] : box[2]].copy()
                found.append((box, float(scores[i + j]), crop))
        return found

    def _select(self, candidates, hw) -> list[ObjectMask]:
        """Box NMS (as segment-anything), then mask-IoU deduplication and nested-part removal."""
        if not candidates:
            return []
        boxes = np.array([c[0] for c in candidates], dtype=np.float64)
        scores = np.array([c[1] for c in candidates])
        objects = []
        for i in box_nms(boxes, scores, self.box_nms_thresh):
            box, score, crop = candidates[i]
            mask = np.zeros(hw, dtype=bool)
            mask[box[1] : box[3], box[0] : box[2]] = crop
            objects.append(ObjectMask(mask=mask, box=box, score=score))
        objects = deduplicate(objects, self.box_nms_thresh)
        if self.nested_containment is not None:
            objects = drop_nested(objects, self.nested_containment)
        return sorted(objects, key=lambda o: -o.area)
