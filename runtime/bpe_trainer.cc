// BpeTrainer: HF's BpeTrainer::do_train on raw-byte words, then the
// tokenizer.json writer. Names follow trainer.rs so the two can be read
// side by side.
#include "runtime/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/pretokenizer.h"

namespace baton {
namespace {

using Pair = uint64_t;  // (left id << 32) | right id: orders as (left, right)
Pair MakePair(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

struct Merge {  // a queue entry; pos lists the words that may hold the pair
  int64_t count;
  Pair pair;
  std::vector<int32_t> pos;
};
// Heap order: highest count first, then the smallest pair (trainer.rs Ord).
bool HeapLess(const Merge& x, const Merge& y) {
  return x.count != y.count ? x.count < y.count : x.pair > y.pair;
}

// trainer.rs Word::merge: replaces each non-overlapping (a, b), left to
// right, and reports the pair-count changes it causes.
void MergeInWord(std::vector<int32_t>& w, int32_t a, int32_t b, int32_t r,
                 std::vector<std::pair<Pair, int32_t>>* changes) {
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] != a || i + 1 >= w.size() || w[i + 1] != b) continue;
    if (i > 0) {
      changes->push_back({MakePair(w[i - 1], a), -1});
      changes->push_back({MakePair(w[i - 1], r), 1});
    }
    w[i] = r;
    w.erase(w.begin() + i + 1);
    if (i + 1 < w.size()) {
      changes->push_back({MakePair(b, w[i + 1]), -1});
      changes->push_back({MakePair(r, w[i + 1]), 1});
    }
  }
}

// Adds word index `i` to a position list unless it was the last one added
// (words are visited in order, so a word's repeats are adjacent).
void AddPos(std::vector<int32_t>& pos, int32_t i) {
  if (pos.empty() || pos.back() != i) pos.push_back(i);
}

}  // namespace

void BpeTrainer::AddDocument(std::string_view text) {
  std::vector<std::string_view> pieces;
  SplitPieces(SplitRegex::kGpt2, text, &pieces);
  for (std::string_view p : pieces) AddWord(p);
}

void BpeTrainer::AddWord(std::string_view bytes, int64_t count) {
  word_counts_[std::string(bytes)] += count;
}

absl::StatusOr<BpeModel> BpeTrainer::Train() const {
  const int32_t specials = static_cast<int32_t>(config_.special_tokens.size());
  if (config_.vocab_size < 256 + specials) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_size: ", config_.vocab_size,
                                                   " cannot hold the 256 byte symbols and ", specials,
                                                   " special tokens (use at least ", 256 + specials, ")"));
  }
  const size_t target = static_cast<size_t>(config_.vocab_size - specials);

  // Alphabet: the 256 byte symbols sorted by code point (compute_alphabet).
  std::vector<int32_t> byte_order(256);
  std::iota(byte_order.begin(), byte_order.end(), 0);
  std::sort(byte_order.begin(), byte_order.end(),
            [](int32_t x, int32_t y) { return ByteLevelCodepoint(x) < ByteLevelCodepoint(y); });
  std::vector<std::string> id_to_word;
  absl::flat_hash_map<std::string, int32_t> word_to_id;
  int32_t byte_to_id[256];
  for (int32_t b : byte_order) {
    byte_to_id[b] = static_cast<int32_t>(id_to_word.size());
    word_to_id[ByteLevelAlphabet()[b]] = byte_to_id[b];
    id_to_word.push_back(ByteLevelAlphabet()[b]);
  }

  // Words in a fixed order (sorted bytes), so nothing depends on hash order.
  std::vector<const std::pair<const std::string, int64_t>*> sorted;
  sorted.reserve(word_counts_.size());
  for (const auto& wc : word_counts_) sorted.push_back(&wc);
  std::sort(sorted.begin(), sorted.end(), [](auto* x, auto* y) { return x->first < y->first; });
  std::vector<std::vector<int32_t>> words(sorted.size());
  std::vector<int64_t> counts(sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) {
    for (char c : sorted[i]->first) words[i].push_back(byte_to_id[static_cast<uint8_t>(c)]);
    counts[i] = sorted[i]->second;
  }

  // count_pairs
  absl::flat_hash_map<Pair, int64_t> pair_counts;
  absl::flat_hash_map<Pair, std::vector<int32_t>> where_to_update;
  for (size_t i = 0; i < words.size(); ++i) {
    for (size_t k = 0; k + 1 < words[i].size(); ++k) {
      const Pair p = MakePair(words[i][k], words[i][k + 1]);
      pair_counts[p] += counts[i];
      AddPos(where_to_update[p], static_cast<int32_t>(i));
    }
  }
  std::vector<Merge> queue;
  std::vector<Pair> keys;
  auto drain = [&] {  // in pair order, so equal entries queue the same way every run
    keys.clear();
    for (const auto& kv : where_to_update) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end());
    for (Pair pair : keys) {
      const int64_t count = pair_counts[pair];
      if (count > 0) {
        queue.push_back({count, pair, std::move(where_to_update[pair])});
        std::push_heap(queue.begin(), queue.end(), HeapLess);
      }
    }
    where_to_update.clear();
  };
  drain();

  BpeModel model;
  std::vector<std::pair<Pair, int32_t>> changes;
  while (word_to_id.size() < target && !queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), HeapLess);
    Merge top = std::move(queue.back());
    queue.pop_back();
    const int64_t current = pair_counts[top.pair];
    if (top.count != current) {  // stale: re-queue with the true count
      top.count = current;
      queue.push_back(std::move(top));
      std::push_heap(queue.begin(), queue.end(), HeapLess);
      continue;
    }
    if (top.count < 1 || config_.min_frequency > top.count) break;

    const int32_t a = static_cast<int32_t>(top.pair >> 32), b = static_cast<int32_t>(top.pair & 0xffffffffu);
    const std::string new_token = id_to_word[a] + id_to_word[b];
    int32_t new_id;
    if (auto it = word_to_id.find(new_token); it != word_to_id.end()) {
      new_id = it->second;  // the same string from another pair: HF reuses the id
    } else {
      new_id = static_cast<int32_t>(id_to_word.size());
      id_to_word.push_back(new_token);
      word_to_id[new_token] = new_id;
    }
    model.merges.push_back({id_to_word[a], id_to_word[b]});

    for (int32_t i : top.pos) {
      changes.clear();
      MergeInWord(words[i], a, b, new_id, &changes);
      for (const auto& [pair, change] : changes) {
        pair_counts[pair] += change * counts[i];
        if (change > 0) AddPos(where_to_update[pair], i);
      }
    }
    drain();
  }

  model.vocab = std::move(id_to_word);
  for (const std::string& s : config_.special_tokens) {
    model.vocab.push_back(s);
    model.special_tokens.push_back(s);
  }
  return model;
}

std::string BpeModelToJson(const BpeModel& model) {
  using Json = nlohmann::ordered_json;
  const int32_t first_special = static_cast<int32_t>(model.vocab.size() - model.special_tokens.size());
  Json added = Json::array();
  for (size_t i = 0; i < model.special_tokens.size(); ++i) {
    added.push_back({{"id", first_special + static_cast<int32_t>(i)},
                     {"content", model.special_tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  auto byte_level = [](bool add_prefix_space, bool trim_offsets) {
    return Json{{"type", "ByteLevel"},
                {"add_prefix_space", add_prefix_space},
                {"trim_offsets", trim_offsets},
                {"use_regex", true}};
  };
  Json post = byte_level(true, false);
  if (!model.special_tokens.empty()) {
    const std::string& bos = model.special_tokens.front();
    const Json bos_piece = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
    auto seq = [](const char* id, int type_id) { return Json{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
    Json template_processing = {
        {"type", "TemplateProcessing"},
        {"single", Json::array({bos_piece, seq("A", 0)})},
        {"pair", Json::array({bos_piece, seq("A", 0), bos_piece, seq("B", 1)})},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", Json::array({first_special})}, {"tokens", Json::array({bos})}}}}}};
    post = {{"type", "Sequence"}, {"processors", Json::array({post, template_processing})}};
  }
  Json vocab = Json::object();
  for (int32_t id = 0; id < first_special; ++id) vocab[model.vocab[id]] = id;
  Json merges = Json::array();
  for (const auto& [a, b] : model.merges) merges.push_back(Json::array({a, b}));
  Json doc = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", byte_level(false, true)},
              {"post_processor", post},
              {"decoder", byte_level(true, true)},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merges}}}};
  return doc.dump(1) + "\n";
}

BpeModel ByteTokenizerModel() {
  BpeModel model;
  const std::array<std::string, 256>& alphabet = ByteLevelAlphabet();
  model.vocab.assign(alphabet.begin(), alphabet.end());
  model.special_tokens = {"<|begin_of_text|>", "<|end_of_text|>"};
  for (const std::string& s : model.special_tokens) model.vocab.push_back(s);
  return model;
}

}  // namespace baton
