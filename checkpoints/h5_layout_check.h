// A structural check of a checkpoint file's HDF5 metadata, done with plain
// reads before HDF5 opens the file. HDF5 1.10 trusts the sizes and links it
// finds on disk: a damaged file can make it loop forever (a global heap
// whose free-space record has size 0, read by H5Aread of a string
// attribute) or ask malloc for terabytes (an object header continuation of
// absurd length, at H5Fopen). Users resume from whatever a dead node left
// on disk, so the readers (CheckCheckpointFile) walk every structure HDF5
// will load on their path — superblock, object headers and their messages,
// group B-trees, symbol nodes, local heaps, the global heap objects of
// string attributes — and refuse the file unless each lies inside it, is
// sized consistently and has the layout baton's writers produce (HDF5's
// earliest format: superblock v0/v1, v1 object headers, symbol-table
// groups, contiguous or compact datasets of fixed-size numbers).
#pragma once

#include <string>

#include "absl/status/status.h"

namespace baton {

// OK, or InvalidArgument "checkpoint PATH: a truncated or damaged HDF5 file (WHAT at
// byte N)" / "... HDF5 layout baton does not write (WHAT at byte N)".
// Reads only metadata (a few KiB per tensor); never allocates more than
// the file holds.
absl::Status CheckHdf5Layout(const std::string& path);

}  // namespace baton
