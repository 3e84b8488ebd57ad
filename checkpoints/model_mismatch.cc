// Reasons for a missing checkpoint tensor (see model_mismatch.h).
#include "checkpoints/model_mismatch.h"

#include <optional>
#include <set>

#include "absl/strings/str_cat.h"

namespace baton {
namespace {

constexpr std::string_view kLayers = "layers.";

// The text before "layers.", and the layer index after it, of a name like
// "adam/m/layers.12.attn.wq"; nullopt for names outside the layers.
std::optional<std::pair<std::string, int>> LayerOf(const std::string& name) {
  const size_t at = name.find(kLayers);
  if (at == std::string::npos || (at > 0 && name[at - 1] != '/')) return std::nullopt;
  size_t i = at + kLayers.size(), end = i;
  while (end < name.size() && end - i < 9 && name[end] >= '0' && name[end] <= '9') ++end;
  if (end == i || end >= name.size() || name[end] != '.') return std::nullopt;
  return std::make_pair(name.substr(0, at), std::stoi(name.substr(i, end - i)));
}

}  // namespace

std::string WhyMissing(const std::string& name, const std::vector<std::string>& file_names) {
  const auto wanted = LayerOf(name);
  if (wanted) {
    std::set<int> held;  // the layers the file holds under the same prefix
    for (const std::string& f : file_names) {
      if (auto l = LayerOf(f); l && l->first == wanted->first) held.insert(l->second);
    }
    if (!held.empty() && !held.count(wanted->second)) {
      const int first = *held.begin(), last = *held.rbegin();
      return absl::StrCat("; the checkpoint holds ", held.size(), held.size() == 1 ? " layer" : " layers",
                          " (layers.", first, "-", last,
                          ") but the model asks for layers.", wanted->second,
                          ": it was written for a model of another shape (model.layers)");
    }
  }
  return absl::StrCat("; the checkpoint holds ", file_names.size(),
                      " tensors, none of that name: it was written for another model or configuration");
}

}  // namespace baton
