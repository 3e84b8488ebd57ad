// `baton eval` (see eval.h): loads the checkpoint (and the teacher), walks
// the validation split batch by batch through Model::Logits, and reduces
// the logits on the host in double: log-sum-exp for the loss, the first
// maximal index for top-1 (ties go to the lower id, on both models alike).
#include "launcher/eval.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "launcher/checkpoint_model.h"
#include "nlohmann/json.hpp"
#include "runtime/indexed_dataset.h"
#include "runtime/sampler.h"

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

constexpr char kUsage[] =
    "baton eval --checkpoint CKPT --data PREFIX [--teacher CKPT2] [--batches N] [--seq-len T] [--batch-size B]"
    " [--val-fraction F] [--device auto|cpu|cuda] [--json FILE]";

// Per-row cross-entropy sum, top-1 hits and argmaxes of one batch.
struct RowStats {
  double loss_sum = 0;
  int64_t hits = 0;
  std::vector<int64_t> argmax;  // (N)
};
RowStats Reduce(const Tensor& logits, const Tensor& targets) {
  const int64_t n = logits.dim(0), v = logits.dim(1);
  const float* x = logits.data<float>();
  const int32_t* y = targets.data<int32_t>();
  RowStats s;
  s.argmax.resize(n);
  for (int64_t r = 0; r < n; ++r) {
    const float* row = x + r * v;
    int64_t best = 0;
    for (int64_t j = 1; j < v; ++j) best = row[j] > row[best] ? j : best;
    double z = 0;
    for (int64_t j = 0; j < v; ++j) z += std::exp(static_cast<double>(row[j]) - row[best]);
    s.argmax[r] = best;
    s.loss_sum += std::log(z) + row[best] - row[y[r]];
    s.hits += best == y[r];
  }
  return s;
}

absl::Status CheckIds(const Tensor& tokens, const Tensor& targets, int64_t vocab, const std::string& data) {
  for (const Tensor* t : {&tokens, &targets}) {
    for (int64_t i = 0; i < t->numel(); ++i) {
      const int32_t id = t->data<int32_t>()[i];
      if (id < 0 || id >= vocab)
        return Bad("--data ", data, ": token id ", id, " is outside the model's vocabulary [0, ", vocab,
                   ") (tokenized with another tokenizer?)");
    }
  }
  return absl::OkStatus();
}

// "--flag VALUE" pairs, each at most once.
absl::StatusOr<std::map<std::string, std::string>> ParseFlags(const std::vector<std::string>& args) {
  static const std::set<std::string> kFlags = {"--checkpoint", "--data",         "--teacher", "--batches",
                                               "--seq-len",    "--batch-size",   "--val-fraction",
                                               "--device",     "--json"};
  std::map<std::string, std::string> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    if (!kFlags.count(args[i])) return Bad("unknown argument '", args[i], "' for 'eval' (usage: ", kUsage, ")");
    if (i + 1 >= args.size()) return Bad("eval: ", args[i], " needs a value (usage: ", kUsage, ")");
    if (!flags.emplace(args[i], args[i + 1]).second) return Bad("eval: ", args[i], " given twice");
    ++i;
  }
  for (const char* f : {"--checkpoint", "--data"})
    if (!flags.count(f)) return Bad("eval: ", f, " is required (usage: ", kUsage, ")");
  return flags;
}

absl::Status PositiveInt(const std::map<std::string, std::string>& flags, const char* name, int64_t* out) {
  auto it = flags.find(name);
  if (it == flags.end()) return absl::OkStatus();
  if (!absl::SimpleAtoi(it->second, out) || *out < 1) return Bad("eval: ", name, " ", it->second, " must be an integer >= 1");
  return absl::OkStatus();
}

nlohmann::json FiguresJson(const EvalFigures& f) {
  return {{"val_loss", f.val_loss}, {"perplexity", f.perplexity}, {"top1_acc", f.top1_acc}};
}

}  // namespace

absl::StatusOr<EvalResult> Evaluate(const EvalOptions& o) {
  BATON_ASSIGN_OR_RETURN(const Device device, EvalDevice(o.device));
  BATON_ASSIGN_OR_RETURN(CheckpointModel model, LoadCheckpointModel(o.checkpoint, device));
  std::optional<CheckpointModel> teacher;
  const int64_t vocab = model.job.model.vocab_size;
  if (!o.teacher.empty()) {
    BATON_ASSIGN_OR_RETURN(teacher, LoadCheckpointModel(o.teacher, device));
    if (teacher->job.model.vocab_size != vocab)
      return Bad("eval: --teacher ", o.teacher, " has model.vocab_size=", teacher->job.model.vocab_size, " but --checkpoint ",
                 o.checkpoint, " has model.vocab_size=", vocab, " (agreement needs one vocabulary)");
  }
  const JobConfig& job = model.job;
  const int64_t t = o.seq_len > 0 ? o.seq_len : job.train.seq_len;
  int64_t b = o.batch_size > 0 ? o.batch_size : job.train.micro_batch_size;
  const double val_fraction = o.val_fraction >= 0 ? o.val_fraction : job.data.val_fraction;
  BATON_ASSIGN_OR_RETURN(IndexedDataset dataset, IndexedDataset::Open(o.data));
  BATON_RETURN_IF_ERROR(dataset.CheckTokenIds(vocab));
  BATON_ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(dataset, static_cast<int>(t), static_cast<uint64_t>(job.train.seed),
                                                          val_fraction));
  const int64_t available = sampler.num_val_samples();
  if (available == 0)
    return Bad("eval: ", o.data, " has no validation samples with data.val_fraction=", val_fraction,
               " (pass --val-fraction F, 0 < F < 1)");
  if (o.batches == 0) b = std::min(b, available);
  const int64_t batches = o.batches > 0 ? o.batches : available / b;
  if (batches * b > available)
    return Bad("eval: --batches ", batches, " x batch size ", b, " = ", batches * b, " samples, but the validation split of ",
               o.data, " has ", available, " of ", t, " tokens");

  EvalResult res;
  double loss = 0, teacher_loss = 0;
  int64_t hits = 0, teacher_hits = 0, agree = 0;
  Tensor tokens = Tensor::Empty({b, t}, DType::kI32), targets = Tensor::Empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < batches; ++i) {
    sampler.ValBatch(i, b, tokens, targets);
    BATON_RETURN_IF_ERROR(CheckIds(tokens, targets, vocab, o.data));
    const Tensor y = targets.Reshape({b * t});
    const RowStats s = Reduce(LogitsOnHostF32(model.model.Logits(tokens)), y);
    loss += s.loss_sum;
    hits += s.hits;
    if (teacher) {
      const RowStats ts = Reduce(LogitsOnHostF32(teacher->model.Logits(tokens)), y);
      teacher_loss += ts.loss_sum;
      teacher_hits += ts.hits;
      for (int64_t r = 0; r < b * t; ++r) agree += s.argmax[r] == ts.argmax[r];
    }
  }
  res.samples = batches * b;
  res.tokens = res.samples * t;
  const double n = static_cast<double>(res.tokens);
  res.model = {loss / n, std::exp(loss / n), static_cast<double>(hits) / n};
  if (teacher) {
    res.has_teacher = true;
    res.teacher = {teacher_loss / n, std::exp(teacher_loss / n), static_cast<double>(teacher_hits) / n};
    res.agreement = static_cast<double>(agree) / n;
  }
  return res;
}

absl::Status RunEvalCommand(const std::vector<std::string>& args) {
  BATON_ASSIGN_OR_RETURN(auto flags, ParseFlags(args));
  EvalOptions o;
  o.checkpoint = flags["--checkpoint"];
  o.data = flags["--data"];
  if (flags.count("--teacher")) o.teacher = flags["--teacher"];
  if (flags.count("--device")) o.device = flags["--device"];
  if (flags.count("--json")) o.json = flags["--json"];
  BATON_RETURN_IF_ERROR(PositiveInt(flags, "--batches", &o.batches));
  BATON_RETURN_IF_ERROR(PositiveInt(flags, "--seq-len", &o.seq_len));
  BATON_RETURN_IF_ERROR(PositiveInt(flags, "--batch-size", &o.batch_size));
  if (flags.count("--val-fraction") &&
      (!absl::SimpleAtod(flags["--val-fraction"], &o.val_fraction) || !(o.val_fraction > 0 && o.val_fraction < 1)))
    return Bad("eval: --val-fraction ", flags["--val-fraction"], " must be a number in (0, 1)");
  BATON_ASSIGN_OR_RETURN(EvalResult r, Evaluate(o));
  std::printf("eval: %s on %s: %lld samples, %lld tokens\n", o.checkpoint.c_str(), o.data.c_str(),
              static_cast<long long>(r.samples), static_cast<long long>(r.tokens));
  std::printf("  val_loss %.4f  perplexity %.3f  top1_acc %.4f\n", r.model.val_loss, r.model.perplexity, r.model.top1_acc);
  nlohmann::json j = {{"checkpoint", o.checkpoint}, {"data", o.data}, {"samples", r.samples}, {"tokens", r.tokens}};
  j.update(FiguresJson(r.model));
  if (r.has_teacher) {
    std::printf("  teacher %s: val_loss %.4f  perplexity %.3f  top1_acc %.4f\n", o.teacher.c_str(),
                r.teacher.val_loss, r.teacher.perplexity, r.teacher.top1_acc);
    std::printf("  agreement with the teacher (top-1): %.4f\n", r.agreement);
    j["teacher"] = FiguresJson(r.teacher);
    j["teacher"]["checkpoint"] = o.teacher;
    j["agreement"] = r.agreement;
  }
  if (!o.json.empty()) {
    std::ofstream out(o.json, std::ios::trunc);
    out << j.dump() << "\n";
    if (!out.flush()) return absl::InternalError(absl::StrCat("eval: writing ", o.json, " failed"));
  }
  return absl::OkStatus();
}

}  // namespace baton
