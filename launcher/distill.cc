// `baton distill` (see distill.h): flags, the teacher checks and report,
// and the teacher-logit dump of offline mode.
#include "launcher/distill.h"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoints/student_init.h"
#include "checkpoints/teacher_logits.h"
#include "checkpoints/checkpoint.h"
#include "launcher/checkpoint_model.h"
#include "launcher/distill_config.h"
#include "launcher/eval.h"
#include "launcher/mpi_session.h"
#include "launcher/signals.h"
#include "launcher/train.h"
#include "parallel/mesh.h"
#include "parallel/peer_watch.h"
#include "parallel/ucx_p2p.h"
#include "runtime/distill_offline.h"
#include "runtime/indexed_dataset.h"
#include "runtime/sampler.h"

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

constexpr char kUsage[] = "baton distill --config FILE [--set section.key=value ...] [--dump-teacher]";

struct Flags {
  std::string config;
  std::vector<std::string> overrides;
  bool dump_teacher = false;
};

absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& args) {
  Flags f;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--dump-teacher") {
      f.dump_teacher = true;
    } else if (args[i] == "--config" && i + 1 < args.size()) {
      f.config = args[++i];
    } else if (args[i] == "--set") {
      while (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "--")) f.overrides.push_back(args[++i]);
    } else {
      return Bad("unknown or incomplete argument '", args[i], "' for 'distill' (usage: ", kUsage, ")");
    }
  }
  if (f.config.empty()) return Bad("distill: --config FILE is required (usage: ", kUsage, ")");
  return f;
}

std::string Mib(int64_t bytes) { return absl::StrCat(bytes / (1 << 20), " MiB"); }

// The mesh's communicators under mpirun (as `baton train` makes them).
absl::StatusOr<MeshComms> MakeComms(const JobConfig& config, const MpiSession& mpi) {
  const ParallelConfig& p = config.parallel;
  BATON_RETURN_IF_ERROR(EnablePeerWatch(MPI_COMM_WORLD, p.timeout_s));
  BATON_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Create({p.dp, p.pp, p.tp}, mpi.size(), mpi.rank()));
  return p.p2p == P2pTransport::kUcx ? CreateMeshCommsWithUcxPipeline(mesh) : CreateMpiMeshComms(mesh);
}

// The training loop with the teacher (online mode): the train driver with
// the extras of OnlineDistillExtras.
absl::Status RunOnline(const JobConfig& config, const MpiSession& mpi) {
  BATON_ASSIGN_OR_RETURN(const DriverExtras extras, OnlineDistillExtras(config));
  if (mpi.rank() == 0) {
    const ModelConfig& tm = extras.teacher.model;
    std::printf("distill: %s, teacher %s (%d layers, dim %d), alpha %g, temperature %g, student init %s\n",
                DistillModeName(config.distill.mode), config.teacher.checkpoint.c_str(), tm.layers, tm.dim,
                config.distill.alpha,
                config.distill.temperature, StudentInitName(config.student.init));
    std::fflush(stdout);
  }
  MeshComms comms;
  if (mpi.size() > 1) {
    BATON_ASSIGN_OR_RETURN(comms, MakeComms(config, mpi));
  }
  TrainSummary summary;
  BATON_RETURN_IF_ERROR(Train(config, &summary, mpi.size() > 1 ? &comms : nullptr, &extras));
  BATON_RETURN_IF_ERROR(comms.Close());
  if (mpi.rank() == 0 && summary.last_step >= summary.first_step) {
    std::printf("distilled steps %lld..%lld: loss %.4f -> %.4f%s\n", static_cast<long long>(summary.first_step),
                static_cast<long long>(summary.last_step), summary.first_loss, summary.last_loss,
                summary.last_val_loss >= 0 ? absl::StrFormat(", val_loss %.4f", summary.last_val_loss).c_str() : "");
  }
  return absl::OkStatus();
}

absl::Status Run(const Flags& flags, const MpiSession& mpi) {
  const int world_size = mpi.size();
  BATON_ASSIGN_OR_RETURN(JobConfig config, LoadJobConfig(flags.config, flags.overrides));
  if (config.teacher.checkpoint.empty()) return Bad("teacher.checkpoint is required for baton distill (in ", flags.config, ")");
  if (!flags.dump_teacher) return RunOnline(config, mpi);
  if (flags.dump_teacher && world_size > 1)
    return absl::FailedPreconditionError("distill --dump-teacher runs on one process for now (not under mpirun)");
  BATON_ASSIGN_OR_RETURN(const Device device, EvalDevice(config.train.device));
  BATON_ASSIGN_OR_RETURN(CheckpointModel teacher, LoadCheckpointModel(config.teacher.checkpoint, device));
  const ModelConfig& tm = teacher.job.model;
  BATON_RETURN_IF_ERROR(CheckTeacherFitsStudent(config, tm, config.teacher.checkpoint));
  // The dump's teacher is loaded like a checkpoint for eval (a training Model: its grads are held, never used).
  const int64_t params = teacher.model.NumParameters();
  std::printf("teacher: %s (step %lld): %lld parameters (%d layers, dim %d, vocab %d), %s of parameter state on %s\n",
              config.teacher.checkpoint.c_str(), static_cast<long long>(teacher.step), static_cast<long long>(params),
              tm.layers, tm.dim, tm.vocab_size, Mib(teacher.model.ParamBytes()).c_str(),
              device == Device::kCuda ? "cuda (bf16 compute)" : "cpu (f32)");
  if (config.student.init == StudentInit::kTeacherLayers) {
    BATON_ASSIGN_OR_RETURN(std::vector<int> from,
                           ResolveLayersFrom(config.student.layers_from, tm.layers, config.model.layers));
    std::printf("student: init from teacher layers [%s] + embedding and head\n", absl::StrJoin(from, ", ").c_str());
  }
  std::printf("distill: mode %s, alpha %g, temperature %g%s\n", DistillModeName(config.distill.mode),
              config.distill.alpha, config.distill.temperature,
              config.distill.mode == DistillMode::kOffline ? absl::StrCat(", top-", config.distill.topk, " from ",
                                                                          config.distill.logits_path).c_str()
                                                           : "");
  std::fflush(stdout);
  if (flags.dump_teacher) {
    if (config.distill.logits_path.empty()) return Bad("distill --dump-teacher needs distill.logits_path (the output directory)");
    BATON_ASSIGN_OR_RETURN(DumpSummary d, DumpTeacherLogits(config, teacher.model));
    std::printf("dumped the teacher's top-%d logits of %lld samples (%lld tokens) in %lld shards -> %s\n",
                config.distill.topk, static_cast<long long>(d.samples), static_cast<long long>(d.tokens),
                static_cast<long long>(d.shards), config.distill.logits_path.c_str());
    return absl::OkStatus();
  }
  return absl::InternalError("unreachable");
}

}  // namespace

absl::StatusOr<DumpSummary> DumpTeacherLogits(const JobConfig& config, Model& teacher) {
  if (config.data.path.empty()) return Bad("data.path is required to dump the teacher's logits");
  BATON_ASSIGN_OR_RETURN(IndexedDataset dataset, IndexedDataset::Open(config.data.path));
  const int64_t t = config.train.seq_len, b = config.train.micro_batch_size;
  BATON_ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(dataset, static_cast<int>(t),
                                                          static_cast<uint64_t>(config.train.seed), config.data.val_fraction));
  TeacherLogitsMeta meta;
  meta.topk = config.distill.topk;
  meta.temperature = config.distill.temperature;
  meta.vocab_size = teacher.config().vocab_size;
  meta.seq_len = t;
  meta.num_samples = sampler.num_train_samples();
  meta.samples_per_shard = std::max<int64_t>(1, (int64_t{1} << 20) / t);  // ~1M tokens per shard
  meta.dataset = config.data.path;
  meta.dataset_tokens = dataset.num_tokens();
  meta.val_fraction = config.data.val_fraction;
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<TeacherLogitsWriter> writer,
                         TeacherLogitsWriter::Create(config.distill.logits_path, meta));
  std::vector<int64_t> ids;
  for (int64_t first = 0; first < meta.num_samples; first += b) {
    const int64_t count = std::min(b, meta.num_samples - first);
    ids.clear();
    for (int64_t i = 0; i < count; ++i) ids.push_back(first + i);
    Tensor tokens, targets;  // (count, T), allocated by FillTrain
    sampler.FillTrain(ids, tokens, targets);
    for (int64_t i = 0; i < tokens.numel(); ++i) {
      const int32_t id = tokens.data<int32_t>()[i];
      if (id < 0 || id >= meta.vocab_size)
        return Bad("data.path ", config.data.path, ": token id ", id, " is outside the teacher's vocabulary [0, ",
                   meta.vocab_size, ")");
    }
    BATON_ASSIGN_OR_RETURN(TeacherTopK top, TeacherTopKOf(LogitsOnHostF32(teacher.Logits(tokens)), meta.topk,
                                                          meta.temperature));
    BATON_RETURN_IF_ERROR(writer->Append(top.values, top.indices, top.rest_lse));
  }
  BATON_RETURN_IF_ERROR(writer->Finish());
  return DumpSummary{meta.num_samples, meta.num_samples * t,
                     (meta.num_samples + meta.samples_per_shard - 1) / meta.samples_per_shard};
}

namespace {

// Offline mode: the dump of --dump-teacher in distill.logits_path, checked
// against this job, read per micro-batch by the driver (every rank reads its
// replica's rows; the head's stage uses them).
absl::Status OpenTeacherTopK(const JobConfig& config, const ModelConfig& teacher, DriverExtras* extras) {
  if (config.distill.logits_path.empty()) return Bad("distill.mode=offline needs distill.logits_path");
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<TeacherLogitsReader> opened,
                         TeacherLogitsReader::Open(config.distill.logits_path));
  std::shared_ptr<TeacherLogitsReader> reader(std::move(opened));
  BATON_ASSIGN_OR_RETURN(IndexedDataset dataset, IndexedDataset::Open(config.data.path));
  BATON_ASSIGN_OR_RETURN(const Sampler sampler,
                         Sampler::Create(dataset, config.train.seq_len, static_cast<uint64_t>(config.train.seed),
                                         config.data.val_fraction));
  TeacherLogitsMeta want;
  want.topk = config.distill.topk;
  want.temperature = config.distill.temperature;
  want.vocab_size = teacher.vocab_size;
  want.seq_len = config.train.seq_len;
  want.num_samples = sampler.num_train_samples();
  want.dataset = config.data.path;
  want.dataset_tokens = dataset.num_tokens();
  want.val_fraction = config.data.val_fraction;
  BATON_RETURN_IF_ERROR(CheckTeacherLogitsFit(reader->meta(), want, config.distill.logits_path));
  extras->teacher.offline = true;
  extras->teacher_topk = [reader](absl::Span<const int64_t> ids) { return reader->Read(ids); };
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DriverExtras> OnlineDistillExtras(const JobConfig& config) {
  const std::string path = config.teacher.checkpoint;
  BATON_ASSIGN_OR_RETURN(CheckpointData teacher, ReadCheckpoint(path));
  auto text = teacher.attrs.find("config");
  if (text == teacher.attrs.end()) return Bad(path, ": no \"config\" attribute (not a baton checkpoint?)");
  BATON_ASSIGN_OR_RETURN(const JobConfig teacher_job, ParseJobConfig(text->second, path + " attrs[config]", {}));
  const ModelConfig tm = teacher_job.model;
  BATON_RETURN_IF_ERROR(CheckTeacherFitsStudent(config, tm, path));
  DriverExtras extras;
  extras.teacher.enabled = true;
  if (config.distill.mode == DistillMode::kOffline) {
    BATON_RETURN_IF_ERROR(OpenTeacherTopK(config, tm, &extras));
  }
  extras.teacher.model = tm;
  extras.teacher.loss = {config.distill.alpha, config.distill.temperature};
  extras.teacher_checkpoint = path;
  if (config.student.init == StudentInit::kTeacherLayers) {
    BATON_ASSIGN_OR_RETURN(const std::vector<int> from,
                           ResolveLayersFrom(config.student.layers_from, tm.layers, config.model.layers));
    auto held = std::make_shared<CheckpointData>(std::move(teacher));
    extras.student_init = [held, tm, student = config.model, from]() mutable -> absl::StatusOr<CheckpointData> {
      absl::StatusOr<CheckpointData> init = StudentFromTeacherLayers(*held, tm, student, from);
      held.reset();  // the teacher's tensors are in its chunks now
      return init;
    };
  }
  teacher = CheckpointData();
  extras.eval_figures = [path, config](const std::string& checkpoint) -> absl::StatusOr<nlohmann::json> {
    // The validation batches the trainer used: eval_batches, or as many whole ones as the split holds.
    BATON_ASSIGN_OR_RETURN(IndexedDataset dataset, IndexedDataset::Open(config.data.path));
    BATON_ASSIGN_OR_RETURN(const Sampler sampler,
                           Sampler::Create(dataset, config.train.seq_len, static_cast<uint64_t>(config.train.seed),
                                           config.data.val_fraction));
    EvalOptions o;
    o.checkpoint = checkpoint;
    o.data = config.data.path;
    o.teacher = path;
    o.batches = std::min<int64_t>(config.train.eval_batches,
                                  sampler.num_val_samples() / config.train.micro_batch_size);
    if (o.batches <= 0) return nlohmann::json::object();
    BATON_ASSIGN_OR_RETURN(const EvalResult r, Evaluate(o));
    return nlohmann::json{{"top1_acc", r.model.top1_acc}, {"teacher_val_loss", r.teacher.val_loss},
                          {"agreement", r.agreement}};
  };
  return extras;
}

int RunDistillCommand(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags = ParseFlags(args);
  InstallStopHandlers();  // before MPI_Init, as for train
  MpiSession mpi;
  if (!flags.ok()) return mpi.Fail(flags.status());
  const absl::Status s = Run(*flags, mpi);
  return s.ok() ? 0 : mpi.Fail(s);
}

}  // namespace baton
