#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace rlp_test {

// Deterministic test bytes: byte i of the stream depends only on i, so a sender and a receiver
// that never share memory can both compute the checksum of "the first N pattern bytes".
void fill_pattern(std::uint64_t offset, char* out, std::size_t n);

// Incremental SHA-256 (OpenSSL EVP), hex output.
class sha256_stream {
  public:
    sha256_stream();
    ~sha256_stream();
    sha256_stream(const sha256_stream&) = delete;
    sha256_stream& operator=(const sha256_stream&) = delete;
    void update(std::string_view data);
    std::string hex_digest();  // finishes the stream; call once

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

std::string sha256_hex(std::string_view data);
// A token's id as the proxy names it (admin API, bucket keys): its SHA-256's first 16 hex digits.
inline std::string token_id(std::string_view token) {
    return sha256_hex(token).substr(0, 16);
}
// SHA-256 (hex) of the first n pattern bytes.
std::string pattern_sha256(std::uint64_t n);

}  // namespace rlp_test
