#!/usr/bin/env python3
"""Greedy-token parity of `baton infer` with Hugging Face `generate` (issue 13's device check).

For the Llama and Qwen2 shapes of scripts/hf_parity.py (random weights, norms and biases moved
away from 1 and 0), it saves each HF model, runs `baton import`, writes a prompt file of token-id
prompts of several lengths, runs `baton infer` greedily (temperature 0, EOS ignored, fixed
max_new_tokens) and compares every completion's tokens with `model.generate(do_sample=False)`.
Prompts run together, so continuous batching, paging across blocks and mixed prefill/decode
steps are all exercised.

  --device cpu  (default): baton in f64 against HF in f64: ties are out of reach, tokens must match exactly.
  --device cuda: baton on the GPU (infer.device=cuda, infer.dtype f32 or bf16 via --dtype) against HF on
                 the GPU in the same dtype; prints the matching prefix of each completion (bf16 may
                 drift after a near-tie, f32 should match).

Exits 1 if any completion differs (cpu, cuda f32). Needs torch and transformers; never downloads.

usage: python3 scripts/infer_hf_parity.py [BATON_BINARY] [--device cpu|cuda] [--dtype f32|bf16] [--workdir DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_parity  # noqa: E402  (its model shapes and helpers; importing runs nothing)
import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

NEW_TOKENS = 24
PROMPT_LENGTHS = [1, 5, 16, 17, 33, 40]  # across 16-token block boundaries
CASES = [c for c in hf_parity.CASES if c[0] in ("llama_tied_gqa", "qwen2_bias", "llama3_rope_scaling")]


def run_case(idx, name, cls, extra, shard, baton, work, device, dtype):
    torch.manual_seed(2000 + idx)
    cfg = hf_parity.make_config(cls, extra)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float().eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    hf_dir = os.path.join(work, name, "hf")
    model.save_pretrained(hf_dir)
    ckpt = os.path.join(work, name, "imported.h5")
    hf_parity.run([baton, "import", "--hf", hf_dir, "--out", ckpt])

    gen = torch.Generator().manual_seed(11 + idx)
    prompts = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in PROMPT_LENGTHS]
    prompts_path = os.path.join(work, name, "prompts.jsonl")
    with open(prompts_path, "w") as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"id": i, "tokens": p, "max_new_tokens": NEW_TOKENS, "temperature": 0}) + "\n")
    out_path = os.path.join(work, name, "out.jsonl")
    baton_dtype = {"cpu": "f64"}.get(device, dtype)
    hf_parity.run([baton, "infer", "--checkpoint", ckpt, "--prompts", prompts_path, "--out", out_path,
                   "--set", f"infer.device={device}", f"infer.dtype={baton_dtype}", "infer.stop_at_eos=false",
                   "infer.max_batch=4", "infer.progress=lines"])
    got = {}
    with open(out_path) as f:
        for line in f:
            r = json.loads(line)
            got[r["id"]] = r["tokens"]

    torch_dtype = {"f64": torch.float64, "f32": torch.float32, "bf16": torch.bfloat16}[baton_dtype]
    model = model.to(device=device, dtype=torch_dtype)
    model.generation_config.eos_token_id = None  # baton ran with stop_at_eos=false
    model.generation_config.pad_token_id = 0
    results = []
    for i, p in enumerate(prompts):
        ids = torch.tensor([p], device=device)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        want = out[0, len(p):].tolist()
        same = 0
        while same < len(want) and same < len(got.get(i, [])) and want[same] == got[i][same]:
            same += 1
        results.append((len(p), same, len(want)))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("baton", nargs="?", default="build/baton")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--workdir")
    args = ap.parse_args()
    baton = os.path.abspath(args.baton)
    work = args.workdir or tempfile.mkdtemp(prefix="infer_hf_parity_")
    strict = args.device == "cpu" or args.dtype == "f32"
    failed = 0
    try:
        for idx, (name, cls, extra, shard) in enumerate(CASES):
            rows = run_case(idx, name, cls, extra, shard, baton, work, args.device, args.dtype)
            ok = all(same == n for _, same, n in rows)
            failed += strict and not ok
            detail = ", ".join(f"prompt {plen}: {same}/{n}" for plen, same, n in rows)
            print(f"{name:<20} greedy tokens equal to HF generate: {detail}  {'ok' if ok else 'DIFFER'}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"infer_hf_parity ({args.device}{'' if args.device == 'cpu' else ' ' + args.dtype}): "
          f"{'FAIL' if failed else 'PASS'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
