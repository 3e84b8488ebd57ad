// Loading a checkpoint for inference (see infer_checkpoint.h).
#include "launcher/infer_checkpoint.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/checkpoint_dir.h"
#include "checkpoints/hf_model.h"
#include "engine/stage_split.h"
#include "kernels/check.h"
#include "launcher/config.h"
#include "runtime/bpe_tokenizer.h"

namespace baton {
namespace {

// p's slice (shard_dim, shard_offset) of the checkpoint's whole weight.
absl::Status ReadParam(const CheckpointData& data, Param& p) {
  const Shape full = p.full_shape.empty() ? p.value.shape() : p.full_shape;
  Tensor staging = Tensor::Empty(full, DType::kF32);  // checkpoints hold f32
  BATON_RETURN_IF_ERROR(CopyInto(data, "params/" + p.name, staging));
  const int64_t cols = full.size() > 1 ? full[1] : 1, out_cols = p.value.rank() > 1 ? p.value.dim(1) : 1;
  for (int64_t r = 0; r < p.value.dim(0); ++r) {
    for (int64_t c = 0; c < out_cols; ++c) {
      const int64_t fr = p.shard_dim == 0 ? r + p.shard_offset : r, fc = p.shard_dim == 1 ? c + p.shard_offset : c;
      const float v = staging.data<float>()[fr * cols + fc];
      if (p.value.dtype() == DType::kF64) {
        p.value.data<double>()[r * out_cols + c] = v;
      } else {
        p.value.data<float>()[r * out_cols + c] = v;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<InferModel> LoadInferModel(const std::string& checkpoint, DType dtype, Device device, int pp,
                                          int pp_rank, TensorParallel tp) {
  std::string path = checkpoint;
  if (std::filesystem::is_directory(path)) {
    BATON_ASSIGN_OR_RETURN(std::optional<std::string> latest, FindLatest(path));
    if (!latest) return absl::NotFoundError(absl::StrCat("--checkpoint ", path, ": a directory without step_*.h5 files"));
    path = *latest;
  }
  BATON_ASSIGN_OR_RETURN(CheckpointData data, ReadCheckpoint(path));
  auto config = data.attrs.find("config");
  if (config == data.attrs.end()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no \"config\" attribute (not a baton checkpoint?)"));
  }
  BATON_ASSIGN_OR_RETURN(JobConfig job, ParseJobConfig(config->second, path + " attrs[config]", {}));
  const DType host_dtype = dtype == DType::kF64 ? DType::kF64 : DType::kF32;
  if (pp < 1 || pp > job.model.layers) {
    return absl::InvalidArgumentError(absl::StrCat("parallel.pp=", pp, ": ", path, " has ", job.model.layers, " layers"));
  }
  const ModelSlice slice = pp > 1 ? SplitLayers(job.model, pp, job.train.seq_len)[pp_rank] : ModelSlice{};
  absl::StatusOr<Model> created = Model::Create(job.model, host_dtype, Device::kCpu, slice, tp);
  if (!created.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", created.status().message()));
  Model model = std::move(*created);
  for (Param& p : model.params()) BATON_RETURN_IF_ERROR(ReadParam(data, p));
  if (device != Device::kCpu) {  // the f32 master weights go to the device; RefreshComputeWeights makes bf16 copies
    BATON_ASSIGN_OR_RETURN(Model on_device, Model::Create(job.model, dtype, device, slice, tp));
    for (size_t i = 0; i < model.params().size(); ++i) on_device.params()[i].value.CopyFrom(model.params()[i].value);
    model = std::move(on_device);
  }
  model.RefreshComputeWeights();
  InferModel out{path, std::move(model), nullptr, job.train.seq_len, data.step};
  if (auto hf = data.attrs.find("hf_config"); hf != data.attrs.end()) {
    BATON_ASSIGN_OR_RETURN(HfConfig h, ParseHfConfig(hf->second, path + " attrs[hf_config]"));
    if (h.max_position_embeddings > 0) out.context = h.max_position_embeddings;
  }
  if (auto tok = data.attrs.find("tokenizer_json"); tok != data.attrs.end()) {
    absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = BpeTokenizer::FromJson(tok->second);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(path, " attrs[tokenizer_json]: ", t.status().message()));
    out.tokenizer = std::move(*t);
  } else {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(job.data.tokenizer);
    if (!t.ok()) {
      return absl::NotFoundError(absl::StrCat(path, ": its data.tokenizer \"", job.data.tokenizer,
                                              "\" cannot be loaded: ", t.status().message()));
    }
    out.tokenizer = std::move(*t);
  }
  if (out.tokenizer->vocab_size() > job.model.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the tokenizer has ", out.tokenizer->vocab_size(),
                                                   " ids but model.vocab_size=", job.model.vocab_size));
  }
  return out;
}

}  // namespace baton
