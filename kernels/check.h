// Error plumbing shared by every layer: Status-returning macros and
// BATON_CHECK for broken internal invariants. It lives in kernels/ because
// kernels/ is the bottom of the house and everything above includes it.
// Library code returns absl::Status; BATON_CHECK is for bugs, never for
// user input (a bad config is a Status, a wrong stride passed by our own
// code is a crash with file:line).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace baton::internal {
[[noreturn]] inline void CheckFailed(const char* cond, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "baton: internal check failed at %s:%d: %s %s\n", file, line, cond, msg);
  std::fflush(stderr);
  std::abort();
}
}  // namespace baton::internal

#define BATON_CHECK(cond)                                                        \
  do {                                                                           \
    if (!(cond)) ::baton::internal::CheckFailed(#cond, __FILE__, __LINE__, ""); \
  } while (0)

#define BATON_CHECK_MSG(cond, msg)                                                  \
  do {                                                                              \
    if (!(cond)) ::baton::internal::CheckFailed(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)

#define BATON_RETURN_IF_ERROR(expr)               \
  do {                                            \
    ::absl::Status baton_status_ = (expr);        \
    if (!baton_status_.ok()) return baton_status_; \
  } while (0)

#define BATON_CONCAT_INNER_(a, b) a##b
#define BATON_CONCAT_(a, b) BATON_CONCAT_INNER_(a, b)
#define BATON_ASSIGN_OR_RETURN(lhs, expr) \
  BATON_ASSIGN_OR_RETURN_IMPL_(BATON_CONCAT_(baton_statusor_, __LINE__), lhs, expr)
#define BATON_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
