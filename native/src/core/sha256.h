// Incremental sha256 over OpenSSL's EVP interface (node exports OpenSSL to addons).
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>

namespace rwd {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
  }
  void update(const void* data, size_t len) { EVP_DigestUpdate(ctx_.get(), data, len); }
  // Lower-case hex; the hash is finished after this.
  std::string hex() {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &n);
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < n; i++) {
      s.push_back(digits[md[i] >> 4]);
      s.push_back(digits[md[i] & 15]);
    }
    return s;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

}  // namespace rwd
