// Teacher top-k logit shards (see teacher_logits.h): HDF5 datasets written
// row block by row block through hyperslabs, a JSON index written last.
#include "checkpoints/teacher_logits.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "checkpoints/h5.h"
#include "nlohmann/json.hpp"

namespace baton {
namespace {

namespace fs = std::filesystem;
constexpr char kFormat[] = "baton-teacher-logits-1";
constexpr char kIndex[] = "index.json";

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

std::string ShardName(int64_t i) { return absl::StrFormat("shard_%05d.h5", i); }

nlohmann::json MetaJson(const TeacherLogitsMeta& m) {
  return {{"format", kFormat},           {"topk", m.topk},
          {"temperature", m.temperature}, {"vocab_size", m.vocab_size},
          {"seq_len", m.seq_len},         {"num_samples", m.num_samples},
          {"samples_per_shard", m.samples_per_shard}, {"dataset", m.dataset},
          {"dataset_tokens", m.dataset_tokens},       {"val_fraction", m.val_fraction}};
}

absl::Status WriteAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) return absl::InternalError(absl::StrCat("writing ", tmp, " failed"));
  }
  BATON_RETURN_IF_ERROR(FsyncPath(tmp, false));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("renaming ", tmp, " to ", path, " failed"));
  }
  return FsyncPath(DirOf(path), true);
}

// (rows, cols) of dset at row `row0`: written from or read into `data`.
absl::Status RowBlock(hid_t dset, hid_t mem_type, int64_t row0, int64_t rows, int64_t cols, void* data, bool write,
                      const std::string& file) {
  const Shape start = cols > 0 ? Shape{row0, 0} : Shape{row0}, count = cols > 0 ? Shape{rows, cols} : Shape{rows};
  BATON_ASSIGN_OR_RETURN(H5Id file_space, SelectBlock(dset, start, count, file));
  H5Id mem_space = Dataspace(count);
  BATON_CHECK_H5(mem_space.get(), file);
  if (write) {
    BATON_CHECK_H5(H5Dwrite(dset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data), file);
  } else {
    BATON_CHECK_H5(H5Dread(dset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data), file);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTeacherLogitsFit(const TeacherLogitsMeta& s, const TeacherLogitsMeta& w, const std::string& dir) {
  auto differ = [&](const char* key, auto stored, auto want) {
    return Bad("teacher logits in ", dir, " were dumped with ", key, "=", stored, " but the job has ", key, "=", want,
               " (dump them again for this job)");
  };
  if (s.topk != w.topk) return differ("distill.topk", s.topk, w.topk);
  if (s.temperature != w.temperature) return differ("distill.temperature", s.temperature, w.temperature);
  if (s.vocab_size != w.vocab_size) return differ("model.vocab_size", s.vocab_size, w.vocab_size);
  if (s.seq_len != w.seq_len) return differ("train.seq_len", s.seq_len, w.seq_len);
  if (s.val_fraction != w.val_fraction) return differ("data.val_fraction", s.val_fraction, w.val_fraction);
  if (s.dataset_tokens != w.dataset_tokens)
    return Bad("teacher logits in ", dir, " were dumped from a dataset of ", s.dataset_tokens, " tokens (", s.dataset,
               ") but data.path=", w.dataset, " has ", w.dataset_tokens);
  if (s.num_samples < w.num_samples)
    return Bad("teacher logits in ", dir, " cover ", s.num_samples, " training samples, the job has ", w.num_samples);
  return absl::OkStatus();
}

// ---- writer

struct TeacherLogitsWriter::Shard {
  std::string path, tmp;
  int64_t first_sample = 0, samples = 0;  // covers [first_sample, first_sample + samples)
  H5Id file, values, indices, rest;
};

absl::StatusOr<std::unique_ptr<TeacherLogitsWriter>> TeacherLogitsWriter::Create(const std::string& dir,
                                                                                  const TeacherLogitsMeta& meta) {
  if (meta.topk < 1 || meta.seq_len < 1 || meta.num_samples < 1 || meta.samples_per_shard < 1 || meta.vocab_size < meta.topk)
    return Bad("teacher logits: topk=", meta.topk, ", seq_len=", meta.seq_len, ", num_samples=", meta.num_samples,
               ", samples_per_shard=", meta.samples_per_shard, ", vocab_size=", meta.vocab_size, " (each >= 1, topk <= vocab)");
  Hdf5Init();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  if (fs::exists(fs::path(dir) / kIndex))
    return absl::AlreadyExistsError(absl::StrCat(dir, " already holds teacher logits (", kIndex,
                                                 "); remove it or choose another distill.logits_path"));
  std::unique_ptr<TeacherLogitsWriter> w(new TeacherLogitsWriter());
  w->dir_ = dir;
  w->meta_ = meta;
  return w;
}

TeacherLogitsWriter::~TeacherLogitsWriter() {
  if (shard_ != nullptr) {  // unfinished: leave nothing behind under a final name
    const std::string tmp = shard_->tmp;
    shard_.reset();
    std::remove(tmp.c_str());
  }
}

absl::Status TeacherLogitsWriter::OpenShard(int64_t index) {
  auto s = std::make_unique<Shard>();
  s->path = (fs::path(dir_) / ShardName(index)).string();
  s->tmp = s->path + ".tmp";
  s->first_sample = index * meta_.samples_per_shard;
  s->samples = std::min(meta_.samples_per_shard, meta_.num_samples - s->first_sample);
  const int64_t rows = s->samples * meta_.seq_len;
  BATON_H5_ASSIGN(s->file = H5Id, H5Fcreate(s->tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, s->tmp);
  H5Id matrix = Dataspace({rows, meta_.topk}), vector = Dataspace({rows});
  BATON_H5_ASSIGN(s->values = H5Id, H5Dcreate2(s->file.get(), "values", H5T_IEEE_F32LE, matrix.get(), H5P_DEFAULT,
                                               H5P_DEFAULT, H5P_DEFAULT), H5Dclose, s->tmp);
  BATON_H5_ASSIGN(s->indices = H5Id, H5Dcreate2(s->file.get(), "indices", H5T_STD_I32LE, matrix.get(), H5P_DEFAULT,
                                                H5P_DEFAULT, H5P_DEFAULT), H5Dclose, s->tmp);
  BATON_H5_ASSIGN(s->rest = H5Id, H5Dcreate2(s->file.get(), "rest_lse", H5T_IEEE_F32LE, vector.get(), H5P_DEFAULT,
                                             H5P_DEFAULT, H5P_DEFAULT), H5Dclose, s->tmp);
  shard_ = std::move(s);
  return absl::OkStatus();
}

absl::Status TeacherLogitsWriter::CloseShard() {
  Shard& s = *shard_;
  BATON_CHECK_H5(s.values.Close(), s.tmp);
  BATON_CHECK_H5(s.indices.Close(), s.tmp);
  BATON_CHECK_H5(s.rest.Close(), s.tmp);
  BATON_CHECK_H5(s.file.Close(), s.tmp);
  BATON_RETURN_IF_ERROR(FsyncPath(s.tmp, false));
  if (std::rename(s.tmp.c_str(), s.path.c_str()) != 0)
    return absl::InternalError(absl::StrCat("renaming ", s.tmp, " to ", s.path, " failed"));
  shard_names_.push_back(fs::path(s.path).filename().string());
  shard_.reset();
  return absl::OkStatus();
}

absl::Status TeacherLogitsWriter::Append(const Tensor& values, const Tensor& indices, const Tensor& rest_lse) {
  const int64_t t = meta_.seq_len, k = meta_.topk;
  const int64_t rows = values.defined() && values.rank() == 2 ? values.dim(0) : 0;
  if (rows == 0 || rows % t != 0 || values.shape() != Shape{rows, k} || values.dtype() != DType::kF32 ||
      indices.shape() != Shape{rows, k} || indices.dtype() != DType::kI32 || rest_lse.shape() != Shape{rows} ||
      rest_lse.dtype() != DType::kF32 || values.device() != Device::kCpu || indices.device() != Device::kCpu ||
      rest_lse.device() != Device::kCpu || !values.is_contiguous() || !indices.is_contiguous() || !rest_lse.is_contiguous())
    return Bad("teacher logits: Append wants CPU values f32 (c·", t, ", ", k, "), indices i32 (c·", t, ", ", k,
               "), rest_lse f32 (c·", t, "); got ", values.DebugString(), ", ", indices.DebugString(), ", ",
               rest_lse.DebugString());
  const int64_t samples = rows / t;
  if (written_ + samples > meta_.num_samples)
    return Bad("teacher logits: ", written_ + samples, " samples appended, the dump covers ", meta_.num_samples);
  int64_t done = 0;
  while (done < samples) {
    if (shard_ == nullptr) BATON_RETURN_IF_ERROR(OpenShard(written_ / meta_.samples_per_shard));
    Shard& s = *shard_;
    const int64_t at = written_ - s.first_sample, take = std::min(samples - done, s.samples - at);
    const int64_t r0 = done * t, n = take * t;
    BATON_RETURN_IF_ERROR(RowBlock(s.values.get(), H5T_NATIVE_FLOAT, at * t, n, k, values.data<float>() + r0 * k, true, s.tmp));
    BATON_RETURN_IF_ERROR(
        RowBlock(s.indices.get(), H5T_NATIVE_INT32, at * t, n, k, indices.data<int32_t>() + r0 * k, true, s.tmp));
    BATON_RETURN_IF_ERROR(RowBlock(s.rest.get(), H5T_NATIVE_FLOAT, at * t, n, 0, rest_lse.data<float>() + r0, true, s.tmp));
    written_ += take;
    done += take;
    if (written_ == s.first_sample + s.samples) BATON_RETURN_IF_ERROR(CloseShard());
  }
  return absl::OkStatus();
}

absl::Status TeacherLogitsWriter::Finish() {
  if (written_ != meta_.num_samples)
    return absl::FailedPreconditionError(absl::StrCat("teacher logits in ", dir_, ": ", written_, " of ",
                                                      meta_.num_samples, " samples written; not finishing"));
  nlohmann::json j = MetaJson(meta_);
  j["shards"] = shard_names_;
  BATON_RETURN_IF_ERROR(WriteAtomically((fs::path(dir_) / kIndex).string(), j.dump(2) + "\n"));
  finished_ = true;
  return absl::OkStatus();
}

// ---- reader

struct TeacherLogitsReader::Files {
  struct One {
    std::string path;
    H5Id file, values, indices, rest;
  };
  std::vector<One> shards;
};

TeacherLogitsReader::~TeacherLogitsReader() = default;

absl::StatusOr<std::unique_ptr<TeacherLogitsReader>> TeacherLogitsReader::Open(const std::string& dir) {
  Hdf5Init();
  const std::string index = (fs::path(dir) / kIndex).string();
  std::ifstream in(index, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("teacher logits ", dir, ": no ", kIndex,
                                            " (no dump there, or an unfinished one: run baton distill --dump-teacher)"));
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != kFormat)
    return Bad(index, ": not a baton teacher-logits index (format ", kFormat, ")");
  std::unique_ptr<TeacherLogitsReader> r(new TeacherLogitsReader());
  r->dir_ = dir;
  TeacherLogitsMeta& m = r->meta_;
  try {
    m.topk = j.at("topk");
    m.temperature = j.at("temperature");
    m.vocab_size = j.at("vocab_size");
    m.seq_len = j.at("seq_len");
    m.num_samples = j.at("num_samples");
    m.samples_per_shard = j.at("samples_per_shard");
    m.dataset = j.at("dataset");
    m.dataset_tokens = j.at("dataset_tokens");
    m.val_fraction = j.at("val_fraction");
  } catch (const nlohmann::json::exception& e) {
    return Bad(index, ": ", e.what());
  }
  const std::vector<std::string> names = j.value("shards", std::vector<std::string>{});
  const int64_t expected = (m.num_samples + m.samples_per_shard - 1) / m.samples_per_shard;
  if (static_cast<int64_t>(names.size()) != expected)
    return Bad(index, ": ", names.size(), " shards listed, ", expected, " expected for ", m.num_samples, " samples");
  r->files_ = std::make_unique<Files>();
  for (const std::string& name : names) {
    Files::One f;
    f.path = (fs::path(dir) / name).string();
    BATON_H5_ASSIGN(f.file = H5Id, H5Fopen(f.path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, f.path);
    BATON_H5_ASSIGN(f.values = H5Id, H5Dopen2(f.file.get(), "values", H5P_DEFAULT), H5Dclose, f.path);
    BATON_H5_ASSIGN(f.indices = H5Id, H5Dopen2(f.file.get(), "indices", H5P_DEFAULT), H5Dclose, f.path);
    BATON_H5_ASSIGN(f.rest = H5Id, H5Dopen2(f.file.get(), "rest_lse", H5P_DEFAULT), H5Dclose, f.path);
    r->files_->shards.push_back(std::move(f));
  }
  return r;
}

absl::StatusOr<TeacherTopK> TeacherLogitsReader::Read(absl::Span<const int64_t> ids) const {
  const int64_t t = meta_.seq_len, k = meta_.topk, n = static_cast<int64_t>(ids.size()) * t;
  TeacherTopK out{Tensor::Empty({n, k}, DType::kF32), Tensor::Empty({n, k}, DType::kI32), Tensor::Empty({n}, DType::kF32),
                  meta_.temperature};
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    if (id < 0 || id >= meta_.num_samples)
      return Bad("teacher logits ", dir_, ": sample ", id, " is outside the ", meta_.num_samples, " dumped");
    const Files::One& f = files_->shards[id / meta_.samples_per_shard];
    const int64_t row0 = (id % meta_.samples_per_shard) * t, at = static_cast<int64_t>(i) * t;
    BATON_RETURN_IF_ERROR(RowBlock(f.values.get(), H5T_NATIVE_FLOAT, row0, t, k, out.values.data<float>() + at * k, false, f.path));
    BATON_RETURN_IF_ERROR(
        RowBlock(f.indices.get(), H5T_NATIVE_INT32, row0, t, k, out.indices.data<int32_t>() + at * k, false, f.path));
    BATON_RETURN_IF_ERROR(RowBlock(f.rest.get(), H5T_NATIVE_FLOAT, row0, t, 0, out.rest_lse.data<float>() + at, false, f.path));
  }
  return out;
}

}  // namespace baton
