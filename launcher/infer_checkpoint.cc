// Loading a checkpoint for inference (see infer_checkpoint.h).
#include "launcher/infer_checkpoint.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/checkpoint_dir.h"
#include "checkpoints/hf_model.h"
#include "kernels/check.h"
#include "launcher/config.h"
#include "runtime/bpe_tokenizer.h"

namespace baton {

absl::StatusOr<InferModel> LoadInferModel(const std::string& checkpoint, DType dtype, Device device) {
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
  BATON_ASSIGN_OR_RETURN(Model model, Model::Create(job.model, host_dtype));
  for (Param& p : model.params()) {
    if (host_dtype == DType::kF32) {
      BATON_RETURN_IF_ERROR(CopyInto(data, "params/" + p.name, p.value));
      continue;
    }
    Tensor staging = Tensor::Empty(p.value.shape(), DType::kF32);  // checkpoints hold f32
    BATON_RETURN_IF_ERROR(CopyInto(data, "params/" + p.name, staging));
    for (int64_t i = 0; i < staging.numel(); ++i) p.value.data<double>()[i] = staging.data<float>()[i];
  }
  if (device != Device::kCpu) {  // the f32 master weights go to the device; RefreshComputeWeights makes bf16 copies
    BATON_ASSIGN_OR_RETURN(Model on_device, Model::Create(job.model, dtype, device));
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
