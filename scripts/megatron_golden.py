#!/usr/bin/env python3
"""Writes tests/data/golden_tiny.{idx,bin} the way Megatron-LM does.

The golden files pin baton's IndexedDatasetWriter/IndexedDataset to
Megatron-LM's MMIDIDX format (megatron/core/datasets/indexed_dataset.py:
IndexedDatasetBuilder.add_item / end_document / finalize and _IndexWriter).
This is an independent re-statement of that algorithm in plain numpy, so it
runs without torch or Megatron installed. tests/runtime/indexed_dataset_test.cc
holds the same input (kGoldenDocs) and checks that baton writes identical
bytes and reads these files back.

Usage: python3 scripts/megatron_golden.py [OUT_PREFIX]   (needs numpy)
"""
import struct
import sys

import numpy

MAGIC = b"MMIDIDX\x00\x00"
DTYPE_CODES = {numpy.uint8: 1, numpy.int8: 2, numpy.int16: 3, numpy.int32: 4,
               numpy.int64: 5, numpy.float64: 6, numpy.float32: 7, numpy.uint16: 8}
BOS, EOS, VOCAB = 256, 257, 258

# Documents of sequences of text; each sequence is framed BOS + bytes + EOS.
# The last document holds two sequences, and one document is empty
# (end_document with no sequence since the previous one).
GOLDEN_DOCS = [["Hi\n"], ["A fortune.\n"], [], ["ab", "c\n"]]


def optimal_dtype(vocab_size):
    # Megatron: DType.optimal_dtype
    return numpy.uint16 if vocab_size is not None and vocab_size < 65500 else numpy.int32


class Builder:
    """Megatron's IndexedDatasetBuilder restricted to add_item/end_document/finalize."""

    def __init__(self, bin_path, dtype):
        self.data_file = open(bin_path, "wb")
        self.dtype = dtype
        self.sequence_lengths = []
        self.document_indices = [0]

    def add_item(self, tokens):
        arr = numpy.array(tokens, dtype=self.dtype)
        self.data_file.write(arr.tobytes(order="C"))
        self.sequence_lengths.append(arr.size)

    def end_document(self):
        self.document_indices.append(len(self.sequence_lengths))

    def finalize(self, idx_path):
        self.data_file.close()
        itemsize = numpy.int64(numpy.dtype(self.dtype).itemsize)
        pointers, ptr = [], numpy.int64(0)
        for length in self.sequence_lengths:
            pointers.append(ptr.item())
            ptr += length * itemsize
        with open(idx_path, "wb") as f:
            f.write(MAGIC)
            f.write(struct.pack("<Q", 1))
            f.write(struct.pack("<B", DTYPE_CODES[self.dtype]))
            f.write(struct.pack("<Q", len(self.sequence_lengths)))
            f.write(struct.pack("<Q", len(self.document_indices)))
            f.write(numpy.array(self.sequence_lengths, dtype=numpy.int32).tobytes(order="C"))
            f.write(numpy.array(pointers, dtype=numpy.int64).tobytes(order="C"))
            f.write(numpy.array(self.document_indices, dtype=numpy.int64).tobytes(order="C"))


def main():
    prefix = sys.argv[1] if len(sys.argv) > 1 else "tests/data/golden_tiny"
    builder = Builder(prefix + ".bin", optimal_dtype(VOCAB))
    for doc in GOLDEN_DOCS:
        for text in doc:
            builder.add_item([BOS] + list(text.encode("utf-8")) + [EOS])
        builder.end_document()
    builder.finalize(prefix + ".idx")
    print(f"wrote {prefix}.idx and {prefix}.bin")


if __name__ == "__main__":
    main()
