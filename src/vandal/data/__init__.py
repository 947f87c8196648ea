"""Images in, datasets listed, views planned: everything between files and tensors."""

from .images import IMAGE_EXTENSIONS, UnreadableImageError, load_image

__all__ = ["IMAGE_EXTENSIONS", "UnreadableImageError", "load_image"]
