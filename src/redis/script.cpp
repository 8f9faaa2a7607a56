#include "ratelimit_proxy/redis/script.hpp"

#include <openssl/evp.h>

#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::redis {

namespace {

std::string sha1_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha1(), nullptr) != 1)
        throw std::runtime_error("SHA-1 of a Lua script failed");
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (unsigned int i = 0; i < size; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 0x0f]);
    }
    return out;
}

using arg_list = boost::container::small_vector<std::string_view, 16>;

void append(arg_list& argv, std::span<const std::string_view> items) {
    argv.insert(argv.end(), items.begin(), items.end());
}

// Keys and args packed into one buffer, kept for the EVAL retry after NOSCRIPT: the
// caller's spans are gone by the time the reply arrives.
struct saved_args {
    std::string bytes;
    boost::container::small_vector<std::uint32_t, 8> sizes;
    std::size_t num_keys = 0;

    saved_args(std::span<const std::string_view> keys, std::span<const std::string_view> args)
        : num_keys(keys.size()) {
        std::size_t total = 0;
        for (auto s : keys)
            total += s.size();
        for (auto s : args)
            total += s.size();
        bytes.reserve(total);
        for (auto s : keys)
            add(s);
        for (auto s : args)
            add(s);
    }

    void add(std::string_view s) {
        bytes.append(s);
        sizes.push_back(static_cast<std::uint32_t>(s.size()));
    }

    void append_to(arg_list& argv) const {
        std::size_t offset = 0;
        for (auto n : sizes) {
            argv.push_back(std::string_view(bytes).substr(offset, n));
            offset += n;
        }
    }
};

}  // namespace

script::script(std::string_view source) : source_(source), sha1_(sha1_hex(source)) {}

// The script must outlive its runs: the retry reads source_ when NOSCRIPT comes back.
void script::run(connection& conn, std::span<const std::string_view> keys,
                 std::span<const std::string_view> args, reply_handler handler) const {
    std::string num_keys = std::to_string(keys.size());
    arg_list argv{"EVALSHA", sha1_, num_keys};
    append(argv, keys);
    append(argv, args);
    conn.command(argv, [this, &conn, saved = saved_args(keys, args), handler = std::move(handler)](
                           outcome o, reply&& r) mutable {
        if (o != outcome::ok || r.type != reply_type::error || !r.str.starts_with("NOSCRIPT")) {
            handler(o, std::move(r));
            return;
        }
        // Redis lost its script cache (restart, failover, SCRIPT FLUSH): EVAL runs the
        // script and caches it again, so later EVALSHAs hit.
        std::string num_keys = std::to_string(saved.num_keys);
        arg_list retry{"EVAL", source_, num_keys};
        saved.append_to(retry);
        conn.command(retry, std::move(handler));
    });
}

}  // namespace ratelimit_proxy::redis
