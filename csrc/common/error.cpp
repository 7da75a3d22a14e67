// error.cpp -- the thread-local error message behind lwGetLastErrorMessage():
// recorded by the API layer's validation and by the backends (see backend.h).
#include <string>

#include "backend.h"

namespace lw {
namespace {
thread_local std::string g_last_error;
}

void set_error(const std::string &msg) { g_last_error = msg; }

lwStatus_t fail(lwStatus_t status, const std::string &msg) {
  set_error(msg);
  return status;
}

const char *last_error() { return g_last_error.c_str(); }

}  // namespace lw
