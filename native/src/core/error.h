// Errors the engine reports to its user. The code lets callers tell a divergence from an
// unsupported program or a damaged trace; the message is shown to the user as it is.
#pragma once

#include <stdexcept>
#include <string>

namespace rwd {

enum class ErrorCode { Unsupported, Diverged, BadTrace, Exec, System };

const char* errorCodeName(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) {
  throw Error(code, message);
}

// Throws a System error naming the failed operation and errno.
[[noreturn]] void failErrno(const std::string& what);

}  // namespace rwd
