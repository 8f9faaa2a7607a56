#include "ratelimit_proxy/auth/token.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace ratelimit_proxy::auth {

namespace {
constexpr std::size_t token_random_bytes = 32;
constexpr std::size_t encoded_length = 43;  // base64url of 32 bytes, no padding

bool is_base64url(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}
}  // namespace

std::string generate_token() {
    unsigned char raw[token_random_bytes];
    if (RAND_bytes(raw, sizeof raw) != 1)
        throw std::runtime_error("RAND_bytes failed");
    unsigned char b64[64];
    int n = EVP_EncodeBlock(b64, raw, sizeof raw);
    std::string out(token_prefix);
    for (int i = 0; i < n; ++i) {
        char c = static_cast<char>(b64[i]);
        if (c == '=')
            break;
        out.push_back(c == '+' ? '-' : c == '/' ? '_' : c);
    }
    OPENSSL_cleanse(raw, sizeof raw);
    return out;
}

namespace {
// OpenSSL 3 looks the algorithm up, allocates and locks on every EVP_Digest(EVP_sha256()):
// fetch it once and keep one context per thread, as every request hashes its token.
struct sha256_context {
    EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~sha256_context() {
        EVP_MD_CTX_free(ctx);
        EVP_MD_free(md);
    }
};
}  // namespace

digest sha256(std::string_view data) {
    thread_local sha256_context h;
    digest out{};
    unsigned int len = 0;
    if (!h.md || !h.ctx || EVP_DigestInit_ex(h.ctx, h.md, nullptr) != 1 ||
        EVP_DigestUpdate(h.ctx, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(h.ctx, out.data(), &len) != 1)
        throw std::runtime_error("SHA-256 failed");
    return out;
}

std::string to_hex(const digest& d) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(d.size() * 2);
    for (auto b : d) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 15]);
    }
    return out;
}

bool digests_equal(const digest& a, const digest& b) {
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
    constexpr std::string_view scheme = "bearer";
    if (authorization.size() <= scheme.size() + 1)
        return std::nullopt;
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        char c = authorization[i];
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
        if (c != scheme[i])
            return std::nullopt;
    }
    auto rest = authorization.substr(scheme.size());
    if (rest.front() != ' ' && rest.front() != '\t')
        return std::nullopt;
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t'))
        rest.remove_prefix(1);
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t'))
        rest.remove_suffix(1);
    if (rest.empty())
        return std::nullopt;
    for (char c : rest) {
        if (c == ' ' || c == '\t' || c == ',')
            return std::nullopt;
    }
    return rest;
}

bool looks_like_token(std::string_view token) {
    if (token.size() != token_prefix.size() + encoded_length)
        return false;
    if (token.substr(0, token_prefix.size()) != token_prefix)
        return false;
    for (char c : token.substr(token_prefix.size())) {
        if (!is_base64url(c))
            return false;
    }
    return true;
}

}  // namespace ratelimit_proxy::auth
