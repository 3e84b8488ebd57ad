#!/usr/bin/env python3
"""PyTorch reference for bench/train_bench.cc: HF LlamaForCausalLM with the
same shapes and batch (built from LlamaConfig, no hub access), fp32 master
weights under bf16 autocast, SDPA attention, fused AdamW, trained on
synthetic random tokens, eager and torch.compile. Prints the same table
columns as train_bench and writes JSON. MFU uses the same flops/token
(6*N_non_embedding + 12*L*d*seq; N_non_embedding counts lm_head, not the
input embedding) against a bf16 GEMM peak measured in this run (8192^3).

  python3 bench/torch_reference.py --preset 125m|1.3b [--steps M] [--warmup N]
                                    [--modes eager,compile] [--json FILE]
"""
import argparse
import json
import time

import torch

PRESETS = {
    "125m": dict(dim=768, layers=12, heads=12, ffn=2048, vocab=32000, seq=1024, batch=16),
    "1.3b": dict(dim=2048, layers=24, heads=16, ffn=5504, vocab=32000, seq=2048, batch=4),
}


def gemm_peak_tflops():
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(20):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        a @ b
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) * 1e-3)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e12


def build(p):
    from transformers import LlamaConfig, LlamaForCausalLM

    kw = dict(vocab_size=p["vocab"], hidden_size=p["dim"], intermediate_size=p["ffn"],
              num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
              num_key_value_heads=p["heads"], max_position_embeddings=p["seq"],
              rms_norm_eps=1e-6, tie_word_embeddings=False, use_cache=False)
    try:
        cfg = LlamaConfig(attn_implementation="sdpa", **kw)
    except TypeError:
        cfg = LlamaConfig(**kw)
        cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    return model, cfg


def run_mode(p, mode, warmup, steps, launch):
    launch = launch if launch is not None else time.perf_counter()  # this mode's start
    model, cfg = build(p)
    model.train()
    n_params = sum(x.numel() for x in model.parameters())
    n_non_emb = n_params - p["vocab"] * p["dim"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95),
                            fused=True)
    B, T = p["batch"], p["seq"]
    g = torch.Generator(device="cuda").manual_seed(42)
    batches = [torch.randint(0, p["vocab"], (B, T + 1), device="cuda", generator=g) for _ in range(4)]

    def fwd_bwd(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        return loss

    step_fn = torch.compile(fwd_bwd) if mode == "compile" else fwd_bwd

    def step(i):
        b = batches[i % 4]
        opt.zero_grad(set_to_none=True)
        loss = step_fn(b[:, :-1], b[:, 1:])
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        return loss

    torch.cuda.reset_peak_memory_stats()
    first_step = None
    loss0 = None
    for i in range(warmup):
        l = step(i)
        if i == 0:
            loss0 = l.item()
            first_step = time.perf_counter() - launch
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        l = step(warmup + i)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    r = dict(mode=mode, step_ms=dt * 1e3, tokens_per_s=B * T / dt,
             peak_gib=torch.cuda.max_memory_allocated() / 2**30,
             reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
             loss_first=loss0, loss_last=l.item(), time_to_first_step_s=first_step,
             params=n_params, non_embedding_params=n_non_emb)
    del model, opt
    torch.cuda.empty_cache()
    return r


def main():
    launch = time.perf_counter()
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="125m", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    p = PRESETS[a.preset]
    results = []
    for i, mode in enumerate(a.modes.split(",")):
        try:  # the first mode's first step counts from launch (imports too), later ones from their start
            results.append(run_mode(p, mode, a.warmup, a.steps, launch if i == 0 else None))
        except Exception as e:  # report and go on: the other mode may still run
            print(f"torch {mode}: failed: {type(e).__name__}: {e}")
    peak = gemm_peak_tflops()
    fpt = 6 * (results[0]["non_embedding_params"] if results else 0) + 12 * p["layers"] * p["dim"] * p["seq"]
    for r in results:
        r["mfu"] = fpt * r["tokens_per_s"] / (peak * 1e12)
    print(f"\n{torch.cuda.get_device_name()} | torch {torch.__version__} {a.preset}: "
          f"B{p['batch']} T{p['seq']} | bf16 GEMM peak {peak:.0f} TFLOP/s, {fpt / 1e9:.3g} GFLOP/token")
    print(f"| {'impl':18} | {'mode':10} | {'tokens/s':>10} | {'step ms':>10} | {'MFU':>6} | "
          f"{'peak GiB':>9} | {'resvd GiB':>9} | {'1st step s':>10} | {'loss0':>8} | {'lossN':>8} |")
    for r in results:
        print(f"| {'torch ' + a.preset:18} | {r['mode']:10} | {r['tokens_per_s']:10.0f} | "
              f"{r['step_ms']:10.2f} | {r['mfu']:6.3f} | {r['peak_gib']:9.2f} | {r['reserved_gib']:9.2f} | "
              f"{r['time_to_first_step_s']:10.2f} | {r['loss_first']:8.4f} | {r['loss_last']:8.4f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(impl="torch", preset=a.preset, device=torch.cuda.get_device_name(),
                           torch=torch.__version__, batch=p["batch"], seq=p["seq"],
                           flops_per_token=fpt, gemm_peak_tflops=peak, results=results), f, indent=1)


if __name__ == "__main__":
    main()
