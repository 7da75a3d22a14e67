// guard.h -- the error discipline of the network-level C API (network.cpp,
// model_file.cpp): validation throws BadParam / Failure, and guarded() maps
// every exception to a status plus a thread-local message, so no C++
// exception crosses the C boundary.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include "../common/backend.h"

namespace lw {
namespace api {

// Thrown by validation; becomes LW_STATUS_BAD_PARAM with its message.
struct BadParam {
  std::string msg;
};
// Any other failure with a status of its own (NOT_SUPPORTED, ALLOC_FAILED, ...).
struct Failure {
  lwStatus_t status;
  std::string msg;
};

[[noreturn]] inline void bad(const std::string &msg) { throw BadParam{msg}; }
[[noreturn]] inline void failure(lwStatus_t status, const std::string &msg) {
  throw Failure{status, msg};
}

// Runs a public call made from inside the library; on failure rethrows it with
// `context` in front of the callee's message.
inline void check(lwStatus_t status, const std::string &context) {
  if (status != LW_STATUS_SUCCESS) throw Failure{status, context + ": " + lwGetLastErrorMessage()};
}

// The int a C caller passed for an enum, read without loading an out-of-range enum value.
template <typename E>
int raw_enum(const E &e) {
  static_assert(sizeof(E) == sizeof(int), "C enums are int-sized here");
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// a * b, or BadParam naming `what` when it overflows int64 or exceeds `cap`.
inline int64_t checked_mul(int64_t a, int64_t b, int64_t cap, const std::string &what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > cap)
    bad(what + ": size " + std::to_string(a) + " x " + std::to_string(b) + " is too large");
  return r;
}

template <typename F>
lwStatus_t guarded(F &&f) {
  try {
    return f();
  } catch (const BadParam &e) {
    return fail(LW_STATUS_BAD_PARAM, e.msg);
  } catch (const Failure &e) {
    return fail(e.status, e.msg);
  } catch (const std::bad_alloc &) {
    return fail(LW_STATUS_ALLOC_FAILED, "out of host memory");
  } catch (const std::exception &e) {
    return fail(LW_STATUS_INTERNAL_ERROR, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(LW_STATUS_INTERNAL_ERROR, "internal error: unknown exception");
  }
}

}  // namespace api
}  // namespace lw
