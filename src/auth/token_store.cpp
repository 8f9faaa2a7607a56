#include "ratelimit_proxy/auth/token_store.hpp"

#include <openssl/crypto.h>

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <cstring>

#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/limit/keys.hpp"

namespace ratelimit_proxy::auth {

namespace {
std::string now_epoch_millis() {
    using namespace std::chrono;
    return std::to_string(
        duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}
std::shared_ptr<const limit::token_overrides> parse_overrides(const redis::reply& r,
                                                              std::string_view id) {
    if (r.type != redis::reply_type::string || r.str.empty())
        return nullptr;
    try {
        return std::make_shared<const limit::token_overrides>(
            config::token_overrides_from_json(nlohmann::json::parse(r.str), "overrides"));
    } catch (const std::exception& e) {
        // Written by the admin API, which validates: only a hand edit gets here.
        spdlog::warn("token {}: ignoring unreadable overrides: {}", id, e.what());
        return nullptr;
    }
}
}  // namespace

std::size_t token_store::digest_hash::operator()(const digest& d) const noexcept {
    std::size_t h;
    std::memcpy(&h, d.data(), sizeof h);  // already uniformly distributed
    return h;
}

std::size_t known_tokens::digest_hash::operator()(const digest& d) const noexcept {
    std::size_t h;
    std::memcpy(&h, d.data(), sizeof h);
    return h;
}

void known_tokens::remember(const digest& d, const identity& who) {
    std::lock_guard lock(mutex_);
    if (tokens_.size() >= max_size_ && !tokens_.contains(d))
        tokens_.clear();  // bounded; refills as clients come back
    tokens_[d] = who;
}

void known_tokens::forget(const digest& d) {
    std::lock_guard lock(mutex_);
    tokens_.erase(d);
}

std::optional<identity> known_tokens::find(const digest& d) const {
    std::lock_guard lock(mutex_);
    auto it = tokens_.find(d);
    if (it == tokens_.end() || !digests_equal(it->first, d))
        return std::nullopt;
    return it->second;
}

token_store::token_store(redis::connection& conn, redis::circuit_breaker& breaker,
                         known_tokens& known, std::string key_prefix,
                         std::chrono::milliseconds cache_ttl, std::size_t cache_size)
    : conn_(conn),
      breaker_(breaker),
      known_(known),
      key_prefix_(std::move(key_prefix)),
      cache_ttl_(cache_ttl),
      cache_size_(cache_size) {}

std::string token_store::key_for(const digest& d) const {
    return limit::token_key(key_prefix_, to_hex(d));
}

bool token_store::cached(std::string_view token, identity& out) {
    if (!looks_like_token(token))
        return false;
    const identity* who = find_cached(sha256(token), false);
    if (!who)
        return false;
    out = *who;  // assigns into out's strings
    return true;
}

const identity* token_store::find_cached(const digest& d, bool accept_stale) const {
    auto it = cache_.find(d);
    if (it == cache_.end())
        return nullptr;
    // Expired entries stay (until the size bound clears them) for use during an outage.
    if (!accept_stale && std::chrono::steady_clock::now() >= it->second.expires)
        return nullptr;
    // The map compared digests already; compare again in constant time so the accept path
    // never depends on a short-circuiting comparison.
    if (!digests_equal(it->first, d))
        return nullptr;
    return &it->second.who;
}

void token_store::remember(const digest& d, const identity& who) {
    if (cache_.size() >= cache_size_ && !cache_.contains(d))
        cache_.clear();  // bounded; refills on demand
    cache_[d] = cache_entry{who, std::chrono::steady_clock::now() + cache_ttl_};
    known_.remember(d, who);
}

void token_store::lookup(std::string_view token, std::function<void(lookup_result)> done) {
    if (!looks_like_token(token)) {
        done(lookup_result{lookup_status::unknown, {}});
        return;
    }
    const digest d = sha256(token);
    auto unavailable = [this, d](const std::function<void(lookup_result)>& done) {
        if (const identity* who = find_cached(d, true))
            return done(lookup_result{lookup_status::found, *who});
        if (auto who = known_.find(d))
            return done(lookup_result{lookup_status::found, std::move(*who)});
        done(lookup_result{lookup_status::unavailable, {}});
    };
    if (!breaker_.allow())
        return unavailable(done);
    const std::string key = key_for(d);
    const std::string_view args[] = {"HMGET", key, "digest", "tier", "overrides"};
    conn_.command(args, [this, d, unavailable, done = std::move(done)](redis::outcome result,
                                                                       redis::reply&& r) {
        if (result != redis::outcome::ok) {
            breaker_.record_failure();
            return unavailable(done);
        }
        if (r.type != redis::reply_type::array || r.elements.size() != 3) {
            breaker_.record_failure();  // an error reply: Redis cannot serve us now
            return unavailable(done);
        }
        breaker_.record_success();
        const auto& stored = r.elements[0];
        const std::string expected = to_hex(d);
        if (stored.type != redis::reply_type::string || stored.str.size() != expected.size() ||
            CRYPTO_memcmp(stored.str.data(), expected.data(), expected.size()) != 0) {
            cache_.erase(d);  // revoked or never issued
            known_.forget(d);
            done(lookup_result{lookup_status::unknown, {}});
            return;
        }
        identity who;
        who.id = limit::token_id_of_digest(expected);
        if (r.elements[1].type == redis::reply_type::string)
            who.tier = r.elements[1].str;
        who.overrides = parse_overrides(r.elements[2], who.id);
        remember(d, who);
        // "Last seen" for the admin API, as precise as the cache TTL: written on a lookup,
        // not on every request.
        const std::string now = now_epoch_millis();
        const std::string hash_key = key_for(d);
        const std::string_view touch[] = {"HSET", hash_key, "last_seen", now};
        conn_.command(touch, [](redis::outcome, redis::reply&&) {});
        done(lookup_result{lookup_status::found, std::move(who)});
    });
}

void token_store::issue(const std::string& tier,
                        std::function<void(std::optional<std::string>)> done) {
    std::string token = generate_token();
    const digest d = sha256(token);
    const std::string key = key_for(d);
    const std::string hex = to_hex(d);
    const std::string created = now_epoch_millis();
    const std::string_view args[] = {"HSET", key,  "digest",     hex,
                                     "tier", tier, "created_at", created};
    if (!breaker_.allow()) {
        done(std::nullopt);
        return;
    }
    conn_.command(args, [this, d, tier, token = std::move(token), done = std::move(done)](
                            redis::outcome result, redis::reply&& r) mutable {
        if (result != redis::outcome::ok || r.type == redis::reply_type::error) {
            breaker_.record_failure();
            done(std::nullopt);
            return;
        }
        breaker_.record_success();
        // The client uses a new token right away: spare that first request a lookup.
        identity who;
        who.id = limit::token_id_of_digest(to_hex(d));
        who.tier = tier;
        remember(d, who);
        done(std::move(token));
    });
}

}  // namespace ratelimit_proxy::auth
