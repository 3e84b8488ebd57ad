// LoadCheckpointModel (see checkpoint_model.h): the checkpoint's config,
// a Model of that shape, and its params copied in by name.
#include "launcher/checkpoint_model.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "kernels/cpu/convert.h"
#include "kernels/gpu.h"

namespace baton {

absl::StatusOr<Device> EvalDevice(const std::string& device) {
  if (device == "cpu") return Device::kCpu;
  if (device != "auto" && device != "cuda")
    return absl::InvalidArgumentError(absl::StrCat("--device ", device, ": expected auto, cpu or cuda"));
  const int gpus = CudaDeviceCount();
  if (gpus == 0 && device == "auto") return Device::kCpu;
  if (gpus == 0)
    return absl::FailedPreconditionError(absl::StrCat("--device cuda but no GPU is visible (", CudaDeviceSummary(), ")"));
  return Device::kCuda;
}

absl::StatusOr<CheckpointModel> LoadCheckpointModel(const std::string& path, Device device) {
  BATON_ASSIGN_OR_RETURN(CheckpointData data, ReadCheckpoint(path));
  auto config = data.attrs.find("config");
  if (config == data.attrs.end())
    return absl::InvalidArgumentError(absl::StrCat(path, ": no \"config\" attribute (not a baton checkpoint?)"));
  BATON_ASSIGN_OR_RETURN(JobConfig job, ParseJobConfig(config->second, path + " attrs[config]", {}));
  const DType compute = device == Device::kCuda ? DType::kBF16 : DType::kF32;
  BATON_ASSIGN_OR_RETURN(Model model, Model::Create(job.model, compute, device));
  std::set<std::string> names;
  for (Param& p : model.params()) {
    const std::string name = "params/" + p.name;
    BATON_RETURN_IF_ERROR(CopyInto(data, name, p.value));  // a device value gets one host-to-device copy
    names.insert(name);
  }
  for (const CheckpointTensor& t : data.tensors) {
    if (t.name.rfind("params/", 0) == 0 && !names.count(t.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", t.name, " is not a parameter of the model its config describes"));
    }
  }
  model.RefreshComputeWeights();
  return CheckpointModel{std::move(job), data.step, std::move(model)};
}

Tensor LogitsOnHostF32(const Tensor& logits) {
  Tensor host = logits;
  if (logits.device() != Device::kCpu) {
    host = Tensor::Empty(logits.shape(), logits.dtype());
    host.CopyFrom(logits);
  }
  if (host.dtype() == DType::kF32) return host;
  Tensor out = Tensor::Empty(host.shape(), DType::kF32);
  cpu::Bf16ToF32(static_cast<const uint16_t*>(host.raw()), host.numel(), out.data<float>());
  return out;
}

}  // namespace baton
