"""Memory banks of reference patch tokens and chunked nearest-neighbour search (docs/method.md §5).

One bank per tap. A test token's score is ``min over bank of (1 - cos)``. The search is chunked
over queries and over the bank, so peak memory is bounded by ``chunk_elements`` whatever the
number of references.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .coreset import greedy_k_centre, reduce_grouped, reference_share

# Elements of the largest query x bank similarity block held at once (64 Mi floats = 256 MiB).
DEFAULT_CHUNK_ELEMENTS = 1 << 26
# Cache-sized blocks on a CPU: with narrow features (C ~ 50) the similarity block, not the multiply, is
# the cost; 512 x 512 blocks (1 MiB) ran 1.7x faster than one 1600 x 6400 block on 2 cores.
BLOCKS = (512, 512)
# On a GPU every block is a kernel launch: 512 x 512 blocks made the search 25% of predict time on an
# H200 (3,990 amax launches for 70 images), so a GPU takes blocks as large as chunk_elements allows.


def default_blocks(device: torch.device, queries: int, bank: int, chunk_elements: int) -> tuple[int, int]:
    """(queries, bank rows) per similarity block for a search on ``device``."""
    if device.type == "cpu":
        return BLOCKS
    rows = max(1, min(bank, chunk_elements))
    return max(1, min(queries, chunk_elements // rows)), rows


def block_distance(queries: torch.Tensor, bank_t: torch.Tensor, bank_block: int) -> torch.Tensor:
    """``min_m (1 - cos(q, m))`` for queries ``[Q, C]`` against ``bank_t`` ``[C, M]`` (the transposed bank),
    one ``[Q, bank_block]`` similarity block at a time -> ``[Q]``.

    No loop depends on Q, so it traces with a symbolic query count: the ONNX graph
    (:mod:`vandal.export.onnx_graph`) runs this same function on a whole batch.
    """
    top = (queries @ bank_t[:, :bank_block]).amax(dim=1)
    for start in range(bank_block, bank_t.shape[1], bank_block):
        top = torch.maximum(top, (queries @ bank_t[:, start: start + bank_block]).amax(dim=1))
    return (1.0 - top).clamp_min(0.0)


def nearest_cosine_distance(queries: torch.Tensor, bank: torch.Tensor,
                            chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                            bank_t: torch.Tensor | None = None,
                            blocks: tuple[int | None, int] | None = None) -> torch.Tensor:
    """``min_m (1 - cos(q, m))`` for every query.

    queries: ``[Q, C]``; bank: ``[M, C]``, both already L2-normalised. Returns ``[Q]``.
    bank_t: ``bank.T`` made contiguous, when the caller keeps one (saves a copy per call).
    blocks: (queries, bank rows) per similarity block; None queries: all at once (a traced graph);
    None: the device's default (:func:`default_blocks`).
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(f"queries [Q, C] and bank [M, C] must share C, got {tuple(queries.shape)} and {tuple(bank.shape)}")
    if bank.shape[0] == 0:
        raise ValueError("memory bank is empty: fit the detector on at least one normal image")
    if blocks is None:
        blocks = default_blocks(queries.device, queries.shape[0], bank.shape[0], chunk_elements)
    query_block, bank_block = blocks
    bank_chunk = max(1, min(bank.shape[0], bank_block, chunk_elements))
    if bank_t is None:
        bank_t = bank.T.contiguous()  # column blocks of a contiguous transpose multiply fastest
    if query_block is None:
        return block_distance(queries, bank_t, bank_chunk)
    query_chunk = max(1, min(queries.shape[0], query_block, chunk_elements // bank_chunk))
    best = torch.empty(queries.shape[0], dtype=queries.dtype, device=queries.device)
    for qs in range(0, queries.shape[0], query_chunk):
        best[qs: qs + query_chunk] = block_distance(queries[qs: qs + query_chunk], bank_t, bank_chunk)
    return best


class MemoryBank:
    """Reference tokens of one tap, L2-normalised, ``[M, C]``."""

    def __init__(self, features: torch.Tensor | None = None, dim: int | None = None,
                 blocks: tuple[int | None, int] | None = None):
        if features is None:
            if dim is None:
                raise ValueError("give the features or the feature width")
            features = torch.empty(0, dim)
        if features.ndim != 2:
            raise ValueError(f"bank features must be [M, C], got {tuple(features.shape)}")
        self.features = features
        self.blocks = blocks  # (queries, bank rows) per similarity block, see nearest_cosine_distance
        self._transposed: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def __len__(self) -> int:
        return self.features.shape[0]

    def add(self, tokens: torch.Tensor) -> None:
        """tokens ``[..., C]`` (e.g. a ``[B, h, w, C]`` tap grid) -> appended, normalised."""
        if tokens.shape[-1] != self.dim:
            raise ValueError(f"bank holds width {self.dim}, got tokens of width {tokens.shape[-1]}")
        flat = F.normalize(tokens.reshape(-1, self.dim).float(), dim=-1)
        # An empty bank takes the tokens' device, so a bank fitted on CUDA stays on CUDA.
        device = flat.device if len(self) == 0 else self.features.device
        self.features = torch.cat([self.features.to(device), flat.to(device)])
        self._transposed = None

    def distance_grid(self, tokens: torch.Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
        """tokens ``[B, h, w, C]`` -> nearest cosine distance ``[B, h, w]``."""
        if tokens.ndim != 4:
            raise ValueError(f"expected tokens [B, h, w, C], got {tuple(tokens.shape)}")
        b, h, w, c = tokens.shape
        if c != self.dim:
            raise ValueError(f"bank holds width {self.dim}, got tokens of width {c}")
        queries = F.normalize(tokens.reshape(-1, c).float(), dim=-1)
        if self.features.device != queries.device:
            self.features = self.features.to(queries.device)
            self._transposed = None
        if self._transposed is None:
            self._transposed = self.features.T.contiguous()
        return nearest_cosine_distance(queries, self.features, chunk_elements, self._transposed,
                                       self.blocks).reshape(b, h, w)


class BankSet:
    """One :class:`MemoryBank` per key (tap x scale), filled reference by reference.

    Each reference's rows are remembered per key (``rows``; its views or object crops, ``h x w``
    rows each, or fewer under a coreset), and every bank keeps its rows grouped by reference, so a
    bank without reference ``i`` (leave-one-out calibration) is a selection of rows, not a new
    embedding. Tokens added are collected and joined once in :meth:`finish`, so adding many
    references costs one concatenation, not one per reference.

    coreset: rows kept per bank, in one view's token count (``h x w``); None keeps every row. Each
    reference is reduced to its share as it is added and the union to the budget at :meth:`finish`
    (:mod:`vandal.memory.coreset`); a bank within the budget is left exactly as it is.
    """

    def __init__(self, coreset: int | None = None) -> None:
        if coreset is not None and (isinstance(coreset, bool) or not isinstance(coreset, int) or coreset < 1):
            raise ValueError(f"memory.coreset must be a whole number of reference views >= 1 (or unset to keep "
                             f"every row), got {coreset!r}")
        self.coreset = coreset
        self.banks: dict[str, MemoryBank] = {}
        self.units: list[int] = []
        self.rows: dict[str, list[int]] = {}  # per key: rows of each reference, in bank order
        # Under a coreset, per key: each kept row's index among its reference's own rows (where in which
        # view it lies). Known for banks built in this process, not for loaded ones.
        self.origins: dict[str, torch.Tensor] = {}
        self._budgets: dict[str, int] = {}
        self._pending: list[dict[str, tuple[torch.Tensor, torch.Tensor | None]]] = []

    def __len__(self) -> int:
        return len(self.units)

    def add(self, tokens: dict[str, torch.Tensor]) -> None:
        """One reference's tokens per key, ``[N, h, w, C]`` (N views or crops), normalised and queued
        (under a coreset, only the reference's share of them)."""
        first = next(iter(tokens.values()))
        index = len(self.units)
        self.units.append(int(first.shape[0]))
        queued = {}
        for key, value in tokens.items():
            flat = F.normalize(value.reshape(-1, value.shape[-1]).float(), dim=-1)
            origin = None
            if self.coreset is not None:
                budget = self._budgets.setdefault(key, self.coreset * value.shape[1] * value.shape[2])
                share = reference_share(budget, index, flat.shape[0])
                origin = greedy_k_centre(flat, share, seed=index) if share < flat.shape[0] else None
                flat = flat if origin is None else flat[origin]
                origin = torch.arange(flat.shape[0]) if origin is None else origin.cpu()
            queued[key] = (flat, origin)
            self.rows.setdefault(key, []).append(flat.shape[0])
        self._pending.append(queued)

    def finish(self) -> None:
        """Join the queued references onto the banks (and reduce each bank to its coreset budget)."""
        if not self._pending:
            return
        for key in self._pending[0]:
            parts = ([self.banks[key].features] if key in self.banks else []) + [p[key][0] for p in self._pending]
            features = torch.cat([p.to(parts[-1].device) for p in parts])
            if self.coreset is not None:
                self._reduce(key, features)
            else:
                self.banks[key] = MemoryBank(features)
        self._pending = []

    def _reduce(self, key: str, features: torch.Tensor) -> None:
        """Bank ``key`` from the old rows and the queued shares ``features``, cut to its budget."""
        known = key in self.origins or key not in self.banks  # a loaded bank's origins are not saved
        origins = ([self.origins[key]] if key in self.origins else []) + [p[key][1] for p in self._pending]
        origin = torch.cat(origins) if known else None  # type: ignore[arg-type]  # known: all recorded
        if features.shape[0] > self._budgets[key]:
            kept, self.rows[key] = reduce_grouped(features, self.rows[key], self._budgets[key])
            features, origin = features[kept], None if origin is None else origin[kept.cpu()]
        self.banks[key] = MemoryBank(features)
        if origin is not None:
            self.origins[key] = origin

    def owners(self, key: str) -> torch.Tensor:
        """The reference each row of bank ``key`` came from, ``[M]``."""
        counts = torch.tensor(self.rows[key])
        return torch.repeat_interleave(torch.arange(len(counts)), counts)

    def without(self, index: int) -> dict[str, MemoryBank] | None:
        """The banks without reference ``index``'s rows (None when it was the only reference)."""
        if len(self.units) < 2:
            return None
        out = {}
        for key, bank in self.banks.items():
            rows = self.rows[key]
            start = sum(rows[:index])
            kept = torch.cat([bank.features[:start], bank.features[start + rows[index]:]])
            out[key] = MemoryBank(kept)
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {key: bank.features.contiguous().cpu() for key, bank in self.banks.items()}

    def load(self, state: dict[str, torch.Tensor], units: list[int], device: str | torch.device,
             rows: dict[str, list[int]] | None = None) -> None:
        """Restore saved banks. ``units`` per reference must account for every row of every bank, or
        ``rows`` (per key, rows of each reference: a coreset's provenance) must."""
        empty = [key for key, value in state.items() if value.ndim != 2 or value.shape[0] == 0]
        if not state or empty:
            raise ValueError(f"the memory bank is empty ({', '.join(empty) or 'no banks'} hold no reference rows): a "
                             "fitted memory holds every reference's tokens")
        self.banks = {key: MemoryBank(value.to(device)) for key, value in state.items()}
        self.units = [int(u) for u in units]
        self.origins = {}
        total = sum(self.units)
        if rows is None:
            for key, bank in self.banks.items():
                if not total or len(bank) % total:
                    raise ValueError(f"bank {key} holds {len(bank)} rows, not a whole number per each of its "
                                     f"{total} reference views")
            rows = {key: [u * (len(bank) // total) for u in self.units] for key, bank in self.banks.items()}
        if not isinstance(rows, dict) or not all(isinstance(rows.get(key), list) for key in self.banks):
            raise ValueError(f"reference_rows must list the rows of each reference for every bank {sorted(self.banks)}")
        self.rows = {key: [int(r) for r in rows[key]] for key in self.banks}
        for key, bank in self.banks.items():
            counts = self.rows[key]
            if len(counts) != len(self.units) or min(counts, default=-1) < 0 or sum(counts) != len(bank):
                raise ValueError(f"bank {key} holds {len(bank)} rows, but its reference_rows {counts} do not "
                                 f"count them for its {len(self.units)} references")
