#!/usr/bin/env python3
"""PyTorch reference for bench/attention_bench.cu: the same table for
F.scaled_dot_product_attention(is_causal=True) in bf16, one row per backend
PyTorch offers here (its default choice, then FlashAttention-2 and cuDNN
forced), on the same shapes and with the same FLOP convention (forward
4·B·H·T²·D/2, backward 2.5× that). Inputs are (B, T, H, D) like baton's,
viewed as (B, H, T, D) for SDPA. Timing: CUDA events, 3 warm-ups, median
of 20. Backward times autograd's backward of one SDPA call, which is the
attention backward kernel plus a little launch overhead.

    python3 bench/attention_reference.py [--json out.json]
"""
import argparse
import contextlib
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [(16, 1024, 12, 12, 64), (4, 2048, 16, 16, 128), (4, 2048, 16, 4, 128)]


def median_ms(fn, warmup=3, reps=20):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[reps // 2]


def bench(shape, backend):
    b, t, h, kv, d = shape
    dev, dt = "cuda", torch.bfloat16
    q = (torch.rand(b, t, h, d, device=dev, dtype=dt) * 2 - 1).transpose(1, 2).requires_grad_()
    k = (torch.rand(b, t, kv, d, device=dev, dtype=dt) * 2 - 1).transpose(1, 2).requires_grad_()
    v = (torch.rand(b, t, kv, d, device=dev, dtype=dt) * 2 - 1).transpose(1, 2).requires_grad_()
    dout = (torch.rand(b, h, t, d, device=dev, dtype=dt) * 2 - 1)
    gqa = dict(enable_gqa=True) if kv != h else {}

    def fwd():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)

    ctx = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
    with ctx:
        with torch.no_grad():
            fwd_ms = median_ms(fwd)
        out = fwd()

        def bwd():
            q.grad = k.grad = v.grad = None
            out.backward(dout, retain_graph=True)

        bwd_ms = median_ms(bwd)
    flops = 4.0 * b * h * t * t * d / 2
    return fwd_ms, flops / fwd_ms / 1e9, bwd_ms, 2.5 * flops / bwd_ms / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = []
    for name, backend in [("default", None), ("flash", SDPBackend.FLASH_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        print(f"\nPyTorch SDPA ({name}) (bf16, causal), median of 20")
        print(f"{'B,T,H,KV,D':<28} {'fwd ms':>9} {'fwd TF/s':>9} {'bwd ms':>9} {'bwd TF/s':>9}")
        for shape in SHAPES:
            label = ",".join(map(str, shape))
            try:
                r = bench(shape, backend)
            except Exception as e:  # a backend may refuse a shape (e.g. GQA)
                print(f"{label:<28} unavailable: {str(e).splitlines()[0][:80]}")
                continue
            print(f"{label:<28} {r[0]:9.3f} {r[1]:9.1f} {r[2]:9.3f} {r[3]:9.1f}")
            rows.append(dict(backend=name, b=shape[0], t=shape[1], h=shape[2], kv=shape[3],
                             d=shape[4], fwd_ms=r[0], fwd_tflops=r[1], bwd_ms=r[2],
                             bwd_tflops=r[3]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
