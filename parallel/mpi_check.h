// MPI return codes as absl::Status: the one place an MPI error becomes a
// Status, with MPI_Error_string's text, the call that failed and file:line.
// Only meaningful on communicators whose error handler is
// MPI_ERRORS_RETURN (MpiCommunicator sets it); under the default handler
// MPI aborts the job before returning a code.
#pragma once

// The deprecated MPI C++ bindings warn under -Wextra; baton uses the C API.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

// Canonical code for an MPI error class: a wrong buffer, count, rank or tag
// is the caller's argument; a lost peer is Unavailable.
inline absl::StatusCode MpiErrorCode(int error_class) {
  switch (error_class) {
    case MPI_ERR_TRUNCATE:
    case MPI_ERR_BUFFER:
    case MPI_ERR_COUNT:
    case MPI_ERR_TYPE:
    case MPI_ERR_TAG:
    case MPI_ERR_RANK:
    case MPI_ERR_ROOT:
    case MPI_ERR_COMM:
    case MPI_ERR_ARG:
    case MPI_ERR_OP:
      return absl::StatusCode::kInvalidArgument;
    case MPI_ERR_NO_MEM:
      return absl::StatusCode::kResourceExhausted;
    case MPI_ERR_PENDING:
    case MPI_ERR_IN_STATUS:
    case MPI_ERR_INTERN:
      return absl::StatusCode::kInternal;
    default:
      return absl::StatusCode::kUnavailable;  // MPI_ERR_OTHER, MPI_ERR_UNKNOWN, transport errors
  }
}

inline absl::Status FromMpi(int code, const char* expr, const char* file, int line) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  int error_class = MPI_ERR_UNKNOWN;
  MPI_Error_class(code, &error_class);
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  return absl::Status(MpiErrorCode(error_class),
                      absl::StrCat(std::string(text, len), " (MPI error ", code, ") in ", expr,
                                   " at ", file, ":", line));
}

}  // namespace baton

#define BATON_CHECK_MPI(x) BATON_RETURN_IF_ERROR(::baton::FromMpi((x), #x, __FILE__, __LINE__))
