"""Score sources behind one contract (:mod:`.base`), in a registry: a new method is one file and one line.

Order matters only for reading: the detector asks every wanted source, sums the view-space maps,
then folds the image-space maps in this order.
"""

from __future__ import annotations

from .base import FixedLevels, ScoreSource, SourceScore
from .distribution import DistributionSource
from .memory import MemorySource
from .mutual import MutualBatchSource, MutualObjectsSource
from .objects import ObjectMemorySource
from .text import TextSource

SOURCES: dict[str, type[ScoreSource]] = {
    source.name: source
    for source in (MemorySource, DistributionSource, TextSource, ObjectMemorySource, MutualObjectsSource, MutualBatchSource)
}

__all__ = ["SOURCES", "FixedLevels", "ScoreSource", "SourceScore"]
