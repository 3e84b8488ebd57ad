// The teacher's share of a pipeline stage (see stage_teacher.h).
#include "engine/stage_teacher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/stage_split.h"
#include "kernels/check.h"
#include "runtime/cuda_allocator.h"

namespace baton {

absl::StatusOr<std::unique_ptr<StageTeacher>> StageTeacher::Create(const EngineConfig& config,
                                                                   const ScheduleSpec& spec, int stage,
                                                                   Communicator& pp, TensorParallel tp) {
  std::unique_ptr<StageTeacher> t(new StageTeacher(config, spec, stage, pp));
  const ModelConfig& tm = config.teacher.model;
  if (tm.vocab_size != config.model.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("teacher vocab_size=", tm.vocab_size,
                                                   " but model.vocab_size=", config.model.vocab_size));
  }
  const int parts = NumParts(spec);
  if (tm.layers < parts) {
    return absl::InvalidArgumentError(
        absl::StrCat("the teacher's ", tm.layers, " layers cannot be cut into ", parts, " pipeline parts"));
  }
  const std::vector<ModelSlice> slices = SplitLayers(tm, parts, config.seq_len, config.teacher.layers_per_part);
  for (int c = 0; c < spec.virtual_stages; ++c) {
    BATON_ASSIGN_OR_RETURN(Model m, Model::CreateForwardOnly(tm, config.compute, config.device,
                                                             slices[ModelPart(spec, stage, c)], tp));
    t->chunks_.push_back(std::move(m));
  }
  t->rows_divisor_ = tp.sequence_parallel && tp.size > 1 ? tp.size : 1;
  return t;
}

std::vector<Model*> StageTeacher::models() {
  std::vector<Model*> out;
  for (Model& m : chunks_) out.push_back(&m);
  return out;
}

int64_t StageTeacher::ParamBytes() const {
  int64_t bytes = 0;
  for (const Model& m : chunks_) bytes += m.ParamBytes();
  return bytes;
}

std::string StageTeacher::MemoryReport() const {
  const DType weights = chunks_.empty() ? config_.compute : chunks_[0].param_dtype();
  return absl::StrFormat("teacher memory: %.1f MiB of %s weights on pipeline stage %d (forward only: no grads, no "
                         "optimizer state)",
                         static_cast<double>(ParamBytes()) / (1 << 20), DTypeName(weights), stage_);
}

absl::StatusOr<int> StageTeacher::Tag(int mb, int part) const {
  // Above the executor's [0, 2·m·parts), below the tied-grad and trace tags.
  const int parts = NumParts(spec_);
  const int64_t tag = int64_t{2} * spec_.microbatches * parts + int64_t{mb} * parts + part;
  if (tag >= kMaxCommTag - 1) {
    return absl::InvalidArgumentError(absl::StrCat("distillation: ", spec_.microbatches, " micro-batches × ", parts,
                                                   " parts need more message tags than MPI guarantees"));
  }
  return static_cast<int>(tag);
}

Tensor StageTeacher::Staged(const Shape& shape) const {
  if (config_.device == Device::kCpu) return Tensor::Empty(shape, config_.compute);
  return Tensor::Empty(shape, config_.compute, DefaultCudaAllocator());
}

absl::Status StageTeacher::Forward(int mb, int chunk, const Tensor& tokens) {
  Model& m = chunks_[chunk];
  const int part = ModelPart(spec_, stage_, chunk);
  const Shape act{tokens.dim(0) * tokens.dim(1) / rows_divisor_, int64_t{config_.teacher.model.dim}};
  const bool cpu = config_.device == Device::kCpu;
  Tensor input;
  if (!m.slice().embedding) {
    const int from = LocatePart(spec_, part - 1).stage;
    if (from == stage_) {
      auto it = local_.find(int64_t{mb} * NumParts(spec_) + part - 1);
      if (it == local_.end()) return absl::InternalError(absl::StrCat("teacher activation of ", mb, " missing"));
      input = std::move(it->second);
      local_.erase(it);
    } else {
      Tensor host = Tensor::Empty(act, config_.compute);
      BATON_ASSIGN_OR_RETURN(const int tag, Tag(mb, part - 1));
      BATON_ASSIGN_OR_RETURN(CommRequestPtr recv, pp_.IRecv(host, from, tag));
      BATON_RETURN_IF_ERROR(recv->Wait());
      input = cpu ? host : Staged(act);
      if (!cpu) input.CopyFrom(host);
    }
  }
  Tensor output = m.slice().head ? Tensor() : Staged(act);
  Tensor logits = m.PartLogits(tokens, m.slice().embedding ? nullptr : &input, m.slice().head ? nullptr : &output);
  BATON_RETURN_IF_ERROR(m.comm_status());
  if (m.slice().head) {
    logits_[mb] = logits.Clone();  // the shared buffer is overwritten by the next forward
    return absl::OkStatus();
  }
  const int to = LocatePart(spec_, part + 1).stage;
  if (to == stage_) {
    local_[int64_t{mb} * NumParts(spec_) + part] = std::move(output);
    return absl::OkStatus();
  }
  Tensor host = output;
  if (!cpu) {
    host = Tensor::Empty(act, config_.compute);
    host.CopyFrom(output);
  }
  BATON_ASSIGN_OR_RETURN(const int tag, Tag(mb, part));
  BATON_ASSIGN_OR_RETURN(CommRequestPtr send, pp_.ISend(host, to, tag));
  sends_.push_back(PendingSend{std::move(host), std::move(send)});
  return absl::OkStatus();
}

absl::StatusOr<Tensor> StageTeacher::TakeLogits(int mb) {
  auto it = logits_.find(mb);
  if (it == logits_.end()) {
    return absl::InternalError(absl::StrCat("the student's head loss of micro-batch ", mb,
                                            " ran before the teacher's forward"));
  }
  Tensor t = std::move(it->second);
  logits_.erase(it);
  return t;
}

absl::Status StageTeacher::FinishStep() {
  for (PendingSend& s : sends_) BATON_RETURN_IF_ERROR(s.request->Wait());
  sends_.clear();
  if (!local_.empty() || !logits_.empty()) {
    return absl::InternalError("teacher activations or logits left over at the end of a step");
  }
  return absl::OkStatus();
}

}  // namespace baton
