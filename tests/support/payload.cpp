#include "payload.hpp"

#include <openssl/evp.h>

#include <stdexcept>
#include <vector>

namespace rlp_test {

void fill_pattern(std::uint64_t offset, char* out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t x = (offset + i + 1) * 0x9E3779B97F4A7C15ull;
        out[i] = static_cast<char>(x >> 56);
    }
}

struct sha256_stream::impl {
    EVP_MD_CTX* ctx = nullptr;
};

sha256_stream::sha256_stream() : impl_(std::make_unique<impl>()) {
    impl_->ctx = EVP_MD_CTX_new();
    if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("EVP_DigestInit_ex failed");
}

sha256_stream::~sha256_stream() {
    if (impl_->ctx)
        EVP_MD_CTX_free(impl_->ctx);
}

void sha256_stream::update(std::string_view data) {
    EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

std::string sha256_hex(std::string_view data) {
    sha256_stream s;
    s.update(data);
    return s.hex_digest();
}

std::string sha256_stream::hex_digest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(impl_->ctx, md, &len);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(digits[md[i] >> 4]);
        out.push_back(digits[md[i] & 15]);
    }
    return out;
}

std::string pattern_sha256(std::uint64_t n) {
    sha256_stream s;
    std::vector<char> buf(256 * 1024);
    std::uint64_t done = 0;
    while (done < n) {
        std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), n - done));
        fill_pattern(done, buf.data(), k);
        s.update(std::string_view(buf.data(), k));
        done += k;
    }
    return s.hex_digest();
}

}  // namespace rlp_test
