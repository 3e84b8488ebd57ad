// Depth pruning before distillation (Minitron-style): a student's initial
// weights taken from a teacher checkpoint, for `student.init =
// teacher-layers`. The student keeps the teacher's widths and vocabulary
// and a subset of its blocks: student layer i is teacher layer
// layers_from[i] (default: evenly spaced, floor(i·L_teacher/L_student), so
// 8 → 4 takes 0, 2, 4, 6); the embedding, final norm and lm head are
// copied. Works on logical checkpoint tensors ("params/<name>", full
// shapes), so the result loads into any layout like any checkpoint.
// Invariant: every student parameter is bit-for-bit a teacher parameter.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "checkpoints/checkpoint.h"
#include "runtime/model_config.h"

namespace baton {

// floor(i·teacher_layers/student_layers) for i in [0, student_layers); needs
// 1 <= student_layers <= teacher_layers.
std::vector<int> EvenlySpacedLayers(int teacher_layers, int student_layers);

// layers_from itself when given (one entry per student layer, each a
// teacher layer; repeats allowed), else EvenlySpacedLayers. InvalidArgument
// naming student.layers_from or model.layers.
absl::StatusOr<std::vector<int>> ResolveLayersFrom(const std::vector<int>& layers_from, int teacher_layers,
                                                   int student_layers);

// OK when a block of the teacher fits the student: dim, heads, kv_heads,
// ffn_dim, vocab_size, qkv_bias and tie_embeddings equal. Else one line
// naming the key and both values ("model.dim=256 but the teacher's is 512").
absl::Status CheckTeacherLayersFit(const ModelConfig& teacher, const ModelConfig& student);

// The student's params ("params/…" tensors only; step 0, no attrs), from
// `teacher` (a checkpoint of a model shaped `teacher_config`). NotFound
// when the teacher lacks a tensor the mapping needs.
absl::StatusOr<CheckpointData> StudentFromTeacherLayers(const CheckpointData& teacher,
                                                        const ModelConfig& teacher_config,
                                                        const ModelConfig& student_config,
                                                        const std::vector<int>& layers_from);

}  // namespace baton
