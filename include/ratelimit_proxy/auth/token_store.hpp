#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ratelimit_proxy/auth/token.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/redis/circuit_breaker.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::auth {

// What the proxy knows about an authenticated token. Never holds the token itself.
struct identity {
    std::string id;    // first 16 hex digits of the token's SHA-256: safe to log, stable
    std::string tier;  // empty: the default tier
    // Per-token numbers set through the admin API; null when none.
    std::shared_ptr<const limit::token_overrides> overrides;
};

enum class lookup_status { found, unknown, unavailable };

struct lookup_result {
    lookup_status status = lookup_status::unknown;
    identity who;
};

// Every token this process has verified, shared by all workers: while Redis is away, a
// client whose next connection lands on another worker thread is still known. Locked, but
// touched only on a per-thread cache miss.
class known_tokens {
  public:
    explicit known_tokens(std::size_t max_size) : max_size_(max_size) {}
    void remember(const digest& d, const identity& who);
    void forget(const digest& d);
    std::optional<identity> find(const digest& d) const;

  private:
    struct digest_hash {
        std::size_t operator()(const digest& d) const noexcept;
    };
    std::size_t max_size_;
    mutable std::mutex mutex_;
    std::unordered_map<digest, identity, digest_hash> tokens_;
};

// Tokens live in Redis as hashes at limit::token_key (keys.hpp), fields as token_records.hpp
// lists them. One store per worker thread; its cache is that thread's alone, so no lock is
// taken on the request path.
class token_store {
  public:
    token_store(redis::connection& conn, redis::circuit_breaker& breaker, known_tokens& known,
                std::string key_prefix, std::chrono::milliseconds cache_ttl,
                std::size_t cache_size);

    // Cache hit: answers now. Miss: nothing, and lookup() must be used.
    // On a hit fills `out`, assigning into its strings so that their capacity is reused.
    bool cached(std::string_view token, identity& out);
    // Asks Redis. If Redis cannot answer, a token seen before is still accepted from the
    // cache however old its entry: an outage must not log out every known client.
    void lookup(std::string_view token, std::function<void(lookup_result)> done);

    // Creates a token in `tier`; done gets it (shown to the client once) or nothing if Redis
    // failed.
    void issue(const std::string& tier, std::function<void(std::optional<std::string>)> done);

    // Rules or tokens changed (admin API): look every token up again. Entries stay, expired,
    // so that while Redis is away the clients seen before are still let in.
    void expire_cache() {
        for (auto& entry : cache_)
            entry.second.expires = {};
    }

    std::string key_for(const digest& d) const;

  private:
    const identity* find_cached(const digest& d, bool accept_stale) const;
    void remember(const digest& d, const identity& who);

    struct digest_hash {
        std::size_t operator()(const digest& d) const noexcept;
    };
    struct cache_entry {
        identity who;
        std::chrono::steady_clock::time_point expires;
    };

    redis::connection& conn_;
    redis::circuit_breaker& breaker_;
    known_tokens& known_;
    std::string key_prefix_;
    std::chrono::milliseconds cache_ttl_;
    std::size_t cache_size_;
    std::unordered_map<digest, cache_entry, digest_hash> cache_;
};

}  // namespace ratelimit_proxy::auth
