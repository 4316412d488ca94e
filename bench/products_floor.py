"""The product floor of a 12-layer, 768-wide encoder (RoBERTa-base, WavLM-base, BEATs-base): its 72
linear-layer products (per layer q, k, v, out 768→768, 768→3072, 3072→768, each weight distinct,
so they come cold from memory as in the model) timed in a loop, in PyTorch, four ways:
  onednn      ATen's mkldnn::_linear_pointwise (what emotorch's linear layers run on oneDNN)
  mkl         torch.addmm (what PyTorch's nn.Linear runs: the BLAS, MKL in PyTorch's wheels)
  packed      the weights pre-packed once (mkldnn._reorder_linear_weight), then _linear_pointwise
  transposed  W·xᵀ on oneDNN (W read as it lies), then transposed back with the bias added
docs/performance.md's "Where the time goes" cites its output. Usage (set the AVX2 profile's variables by hand):
  python bench/products_floor.py [rows ...]        default rows: 128 496
  ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/products_floor.py
  THP_MEM_ALLOC_ENABLE=1 python bench/products_floor.py   (PyTorch's 2 MiB pages for large blocks)
"""
import sys
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
lin = torch.ops.mkldnn._linear_pointwise
SHAPES = [(768, 768)] * 4 + [(3072, 768), (768, 3072)]  # (out, in) per layer


def timed(run, reps=3):
    t = time.perf_counter()
    for _ in range(reps):
        run()
    return (time.perf_counter() - t) / reps * 1e3


def alternating(ways, trials=7):
    """Each way warmed twice, then `trials` rounds of all ways in turn (the order reversed every
    other round, so that a drift of the machine's speed hits all alike): best and median ms."""
    for run in ways.values():
        run(), run()
    times = {name: [] for name in ways}
    for r in range(trials):
        for name in (list(ways) if r % 2 == 0 else list(reversed(ways))):
            times[name].append(timed(ways[name]))
    return {name: (min(t), sorted(t)[len(t) // 2]) for name, t in times.items()}


def main(rows_list):
    layers = [[(torch.randn(o, i), torch.randn(o)) for o, i in SHAPES] for _ in range(12)]
    print(f"72 products of a 12 × 768 encoder, 2 threads, ms per pass, best (median) of 7 alternating rounds; CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for rows in rows_list:
        x = {768: torch.randn(rows, 768), 3072: torch.randn(rows, 3072)}
        packed = [[(torch.ops.mkldnn._reorder_linear_weight(w, rows), b, w.size(1)) for w, b in layer] for layer in layers]
        ways = {
            "onednn": lambda: [lin(x[w.size(1)], w, b, "none", [], "") for layer in layers for w, b in layer],
            "mkl": lambda: [torch.addmm(b, x[w.size(1)], w.t()) for layer in layers for w, b in layer],
            "packed": lambda: [lin(x[k], w, b, "none", [], "") for layer in packed for w, b, k in layer],
            "transposed": lambda: [torch.add(lin(w, x[w.size(1)], None, "none", [], "").t(), b) for layer in layers for w, b in layer],
        }
        res = alternating(ways)
        print(f"rows {rows}: " + "  ".join(f"{name} {best:.1f} ({med:.1f})" for name, (best, med) in res.items()))
        del packed


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [128, 496])
