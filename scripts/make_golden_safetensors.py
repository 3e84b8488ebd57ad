#!/usr/bin/env python3
"""Writes tests/data/golden_small.safetensors with Hugging Face's own writer.

tests/checkpoints/safetensors_test.cc writes the same tensors and metadata
with baton's WriteSafetensors and expects identical bytes, so any drift from
the reference layout (tensor order, JSON spelling, padding) fails a test.
The tensors here and in the test (GoldenTensors) must stay in step.

  pip install safetensors numpy && python3 scripts/make_golden_safetensors.py
"""
import os
import sys

import numpy as np
import safetensors
from safetensors import TensorSpec


def bf16_bits(x):
    """f32 -> bf16 bit patterns, round to nearest even (inputs are finite)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data", "golden_small.safetensors")
    arrays = {
        # name: (safetensors dtype, shape, little-endian array holding the bytes)
        "embed.weight": ("F32", [2, 3], np.array([0.5, -1.25, 3.0, 1e-3, -0.0, 100.0], "<f4")),
        "a.bias": ("F32", [2], np.array([0.25, -8.0], "<f4")),
        "empty": ("F32", [0, 3], np.zeros([0], "<f4")),
        # Narrowed from these f32 values by the writer under test.
        "norm.weight": ("BF16", [3], bf16_bits([1.0, 0.1, -3.14159])),
        "attn.wq": ("F16", [2, 2], np.array([0.1, -2.5, 65519.0, 1e-7], "<f4").astype("<f2")),
        "step": ("I32", [], np.array([7], "<i4")),
        "rope.theta": ("F64", [1], np.array([10000.5], "<f8")),
        "\u00fcn\u00ef\"code\tname": ("I32", [2], np.array([-1, 2147483647], "<i4")),
    }
    framework_names = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "I32": "int32", "F64": "float64"}
    specs = {}
    for name, (dtype, shape, a) in arrays.items():
        a = np.ascontiguousarray(a)
        specs[name] = TensorSpec(dtype=framework_names[dtype], shape=shape, data_ptr=a.ctypes.data, data_len=a.nbytes)
    # One metadata key: HF writes several in hash-map order (not reproducible).
    metadata = {"format": "pt \"quoted\"\n\u0001 \u00e9"}
    safetensors.serialize_file(specs, out, metadata=metadata)
    print(f"wrote {out} ({os.path.getsize(out)} bytes) with safetensors {safetensors.__version__}")


if __name__ == "__main__":
    main()
