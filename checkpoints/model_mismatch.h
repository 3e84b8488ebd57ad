// Says why a checkpoint lacks a tensor the model asks for, in words a user
// can act on. Resuming a checkpoint of another model shape used to end in
// "no such tensor layers.4.attn_norm" (issue 15); the readers
// (checkpoint.cc CopyInto, dist_checkpoint_read.cc) append this reason to
// their NotFound error, which then says which shapes differ: how many
// layers the file holds against the layer the model asked for.
#pragma once

#include <string>
#include <vector>

namespace baton {

// "; the checkpoint holds 4 layers (layers.0-3) but the model asks for
// layers.4: it was written for a model of another shape (model.layers)",
// or, for a name with no layer in it, "; the checkpoint holds N tensors,
// none of that name: it was written for another model or configuration".
// `file_names`: every tensor name in the file.
std::string WhyMissing(const std::string& name, const std::vector<std::string>& file_names);

}  // namespace baton
