#include "ratelimit_proxy/proxy/correlation.hpp"

#include <algorithm>
#include <random>

namespace ratelimit_proxy::proxy {

namespace {

bool lower_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// `n` lower-case hex digits at `at`; with nonzero, not all '0'.
bool hex_run(std::string_view s, std::size_t at, std::size_t n, bool nonzero) {
    bool any = false;
    for (std::size_t i = at; i < at + n; ++i) {
        if (!lower_hex(s[i]))
            return false;
        any = any || s[i] != '0';
    }
    return any || !nonzero;
}

// splitmix64's finalizer: a bijection on 64 bits.
std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void put_hex(std::uint64_t v, char* out) {
    static constexpr char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
        out[i] = digits[v & 0xf];
        v >>= 4;
    }
}

}  // namespace

bool valid_request_id(std::string_view id) {
    if (id.empty() || id.size() > max_request_id_size)
        return false;
    for (const char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool valid_traceparent(std::string_view v) {
    if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    if (!hex_run(v, 0, 2, false) || v.substr(0, 2) == "ff")
        return false;
    if (!hex_run(v, 3, 32, true) || !hex_run(v, 36, 16, true) || !hex_run(v, 53, 2, false))
        return false;
    if (v.substr(0, 2) == "00")
        return v.size() == 55;
    return v.size() == 55 || v[55] == '-';
}

request_id_generator::request_id_generator(std::uint64_t prefix, std::uint64_t start)
    : counter_(start) {
    put_hex(prefix, prefix_.data());
}

namespace {
std::uint64_t random_word(std::random_device& device) {
    return (std::uint64_t{device()} << 32) | device();
}
}  // namespace

request_id_generator::request_id_generator() : counter_(0) {
    std::random_device device;
    put_hex(random_word(device), prefix_.data());
    counter_ = random_word(device);
}

void request_id_generator::next(std::array<char, size>& out) {
    std::copy(prefix_.begin(), prefix_.end(), out.begin());
    put_hex(mix(counter_++), out.data() + prefix_.size());
}

}  // namespace ratelimit_proxy::proxy
