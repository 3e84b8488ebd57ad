#!/usr/bin/env python3
"""The PyTorch side of issue 13's inference benchmark: Hugging Face `generate`
on a random-weight Llama of infer_bench's preset shape (1.3b: train_bench's
1.3B; 8b: Llama-3-8B shapes), bf16 on the GPU, greedy, B prompts of P random
tokens, exactly N new tokens each (EOS ignored). Modes: eager (dynamic cache)
and static (static cache + torch.compile of the forward). Prints one line
per mode and writes JSON (--json). A benchmark: nothing is asserted.

usage: python3 bench/hf_generate_reference.py --preset 1.3b --batch 64 --prompt 128 --new 256 [--modes eager,static]
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PRESETS = {
    "1.3b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
                 intermediate_size=5504, vocab_size=32000),
    "8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=14336, vocab_size=128256, rope_theta=500000.0),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="1.3b", choices=PRESETS)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--modes", default="eager,static")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = LlamaConfig(**PRESETS[a.preset], max_position_embeddings=4096, tie_word_embeddings=False)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.prompt), device="cuda")
    mask = torch.ones_like(ids)
    results = []
    for mode in a.modes.split(","):
        kw = dict(max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False, attention_mask=mask,
                  pad_token_id=0)
        if mode == "static":
            kw["cache_implementation"] = "static"
            model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        with torch.no_grad():
            t0 = time.time()
            model.generate(ids, **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up (compiles)
            warm = time.time() - t0
            torch.cuda.synchronize()
            t0 = time.time()
            out = model.generate(ids, **kw)
            torch.cuda.synchronize()
            dt = time.time() - t0
        new = (out.shape[1] - a.prompt) * a.batch
        r = dict(impl="hf_generate", mode=mode, preset=a.preset, batch=a.batch, prompt=a.prompt, new=a.new,
                 tokens_per_s=new / dt, seconds=dt, warmup_s=warm,
                 peak_gib=torch.cuda.max_memory_allocated() / 2**30)
        results.append(r)
        print(f"hf generate {mode:6} {a.preset} batch {a.batch}: {r['tokens_per_s']:.0f} tokens/s "
              f"({dt:.1f} s, warm-up {warm:.1f} s, peak {r['peak_gib']:.1f} GiB)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
