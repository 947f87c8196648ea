"""Memory banks of reference patches: search, neighbourhood scales, augmentation."""

from .bank import MemoryBank, nearest_cosine_distance
from .pooling import pool_neighbourhood

__all__ = ["MemoryBank", "nearest_cosine_distance", "pool_neighbourhood"]
