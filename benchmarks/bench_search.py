"""Exact nearest-neighbour search against the memory: the alternatives on the same banks, one run.

    python benchmarks/bench_search.py [--shots 4 16 64] [--augment] [--threads 2]

Banks are the default detector's real ones (bottle references, EfficientNet-Lite2 taps at strides 8
and 16, 3 x 3 neighbourhoods; synthetic images when the data is absent); queries are one test
image's tokens. Methods: ``blocks`` (vandal's 512 x 512 similarity blocks), ``one-matmul`` (one
query x bank product per 2^26 elements, then max), ``bf16+recheck`` (bfloat16 product, float32
recheck of each query's 8 best candidates: not exact, the mismatch is printed), ``faiss`` (exact
inner product, IndexFlatIP). Prints ms per image and the largest difference from ``blocks``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vandal.data.images import load_image
from vandal.detector import Detector
from vandal.memory.bank import nearest_cosine_distance
from vandal.memory.maps import memory_tokens

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"


def one_matmul(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    return nearest_cosine_distance(queries, bank, blocks=(max(1, (1 << 26) // len(bank)), len(bank)))


def bf16_recheck(queries: torch.Tensor, bank: torch.Tensor, candidates: int = 8) -> torch.Tensor:
    approx = queries.bfloat16() @ bank.bfloat16().T
    top = approx.topk(min(candidates, bank.shape[0]), dim=1).indices
    exact = torch.einsum("qc,qkc->qk", queries, bank[top])
    return (1.0 - exact.amax(dim=1)).clamp_min(0.0)


def faiss_search(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    import faiss

    index = faiss.IndexFlatIP(bank.shape[1])
    index.add(bank.numpy())
    similarity, _ = index.search(queries.numpy(), 1)
    return torch.from_numpy(1.0 - similarity[:, 0]).clamp_min(0.0)


METHODS = {"blocks": nearest_cosine_distance, "one-matmul": one_matmul, "bf16+recheck": bf16_recheck,
           "faiss": faiss_search}


def timed(method, pairs, repeat: int) -> tuple[float, list[torch.Tensor]]:
    method(*pairs[0])  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        out = [method(q, b) for q, b in pairs]
    return (time.perf_counter() - start) / repeat, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if BOTTLE.is_dir():
        train = sorted((BOTTLE / "train" / "good").glob("*.png"))
        test = sorted((BOTTLE / "test" / "broken_large").glob("*.png"))[0]
    else:
        rng = np.random.default_rng(0)
        train = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(max(args.shots))]
        test = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    print(f"torch {torch.__version__}, {args.threads} threads; augment={args.augment}")
    for k in args.shots:
        detector = Detector(progress=False, augment=args.augment, device="cpu").fit(train[:k])
        banks = detector.sources_[0].banks.banks
        item = detector.embedder_.image(load_image(test))
        tokens = memory_tokens(item.output.taps, detector.config.memory.neighbourhood)
        pairs = [(F.normalize(tokens[key].reshape(-1, tokens[key].shape[-1]), dim=-1), bank.features)
                 for key, bank in banks.items()]
        sizes = ", ".join(f"{key}: {q.shape[0]} x {b.shape[0]} x {b.shape[1]}" for key, (q, b) in zip(banks, pairs))
        print(f"k={k}: {sizes}")
        reference = None
        for name, method in METHODS.items():
            seconds, out = timed(method, pairs, args.repeat)
            reference = out if reference is None else reference
            diff = max(float((a - r).abs().max()) for a, r in zip(out, reference))
            print(f"  {name:13s} {1000 * seconds:8.2f} ms per image   max |diff| vs blocks {diff:.1e}")


if __name__ == "__main__":
    main()
