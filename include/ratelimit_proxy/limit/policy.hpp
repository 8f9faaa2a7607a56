#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ratelimit_proxy/limit/keys.hpp"

namespace ratelimit_proxy::limit {

// concurrency: at most `limit` requests in flight, each holding a lease from admission to
// its last response byte (window and burst do not apply; window carries the lease time).
enum class algorithm { token_bucket, gcra, sliding_window, fixed_window, concurrency };

// What a policy counts: requests (each costs `cost`), LLM tokens read from the upstream's
// usage, or money (nano-USD, from the usage and the model's price). Metered policies
// (tokens, usd) reserve an upper bound of the request's cost before it is sent and settle
// to the real usage after (lua/settle.lua).
enum class meter { requests, tokens, usd };
// Which tokens a tokens meter counts.
enum class token_count { total, input, output };
// Fixed windows that follow the UTC calendar instead of window_seconds: a week from Monday
// 00:00, a month, or one window for ever (a lifetime total).
enum class calendar { none, week, month, lifetime };

// What a policy counts per: one bucket for everybody, per resolved client IP, per token, or
// per token and route (method + path).
enum class key_kind { global, client_ip, token, token_route };

// The numbers of a policy. Token bucket and GCRA refill at limit / window_seconds up to a
// capacity of burst (0: burst = limit); sliding and fixed windows allow `limit` per window.
struct limits {
    double limit = 60;
    double window_seconds = 60;
    double burst = 0;
    // Fixed window only: calendar windows instead of window_seconds long.
    calendar period = calendar::none;

    double capacity() const { return burst > 0 ? burst : limit; }
    double rate_per_second() const { return limit / window_seconds; }
};

// Which requests a policy applies to. Empty fields match anything. The path prefix is
// compared with the request path the client sent (e.g. "/api/chat/completions"), after
// percent-decoding, on a segment boundary ("/api/chat" matches "/api/chat/x", not "/api/chatx").
struct route_match {
    std::string method;       // upper case, e.g. "POST"
    std::string path_prefix;  // e.g. "/api/chat/completions"
    // The request body's "model": exact, or a prefix ending in '*' ("gpt-4o*"). Empty: any.
    // A policy with a model is checked only once the body has been read.
    std::string model;

    bool matches_model(std::string_view request_model) const;
};

// Decisions counted per policy, for the admin API's stats (shadow denials included). Each
// worker counts on a cache line of its own (one increment per request would otherwise bounce
// one line between cores); readers add the slots up.
class policy_counters {
  public:
    enum kind { allowed, denied, shadow_denied };
    struct totals {
        std::uint64_t allowed = 0;
        std::uint64_t denied = 0;
        std::uint64_t shadow_denied = 0;
    };

    // One slot per worker thread; more workers than slots share them.
    explicit policy_counters(std::size_t slots);

    void add(kind k, unsigned worker, std::uint64_t n = 1) {
        slots_[worker % slot_count_].counts[k].fetch_add(n, std::memory_order_relaxed);
    }
    totals sum() const;

  private:
    struct alignas(64) slot {
        std::atomic<std::uint64_t> counts[3] = {};
    };
    std::size_t slot_count_;
    std::unique_ptr<slot[]> slots_;
};

// One limit rule. Immutable once built; shared by every worker.
struct policy {
    std::string name = "default";
    algorithm algo = algorithm::token_bucket;
    limits numbers;
    key_kind key = key_kind::token;
    route_match match;
    std::uint32_t cost = 1;  // meter requests only
    meter what = meter::requests;
    token_count counts = token_count::total;    // meter tokens only
    bool shadow = false;                        // decided, logged and counted, never enforced
    std::optional<bool> fail_closed;            // unset: the process-wide FAIL_CLOSED
    std::shared_ptr<policy_counters> counters;  // set when a rule set is built
    std::uint16_t slot = 0;                     // policy_slots() (name_slots.hpp), idem

    bool matches(std::string_view method, std::string_view path) const;
    bool metered() const { return what != meter::requests; }
    // Needs the request body (its model, its bound) before it can be checked.
    bool needs_body() const { return metered() || !match.model.empty(); }
};

std::string_view to_string(algorithm a);
std::string_view to_string(key_kind k);
std::string_view to_string(meter m);
std::string_view to_string(token_count c);
std::optional<meter> meter_from(std::string_view s);
std::optional<token_count> token_count_from(std::string_view s);
std::optional<algorithm> algorithm_from(std::string_view s);
std::optional<key_kind> key_kind_from(std::string_view s);

// The bucket part of a key: "global"; the client address; the token id; or
// token id + " " + method + " " + path (the request path without its query) for token_route.
std::string bucket_id(key_kind k, std::string_view token_id, std::string_view client_address,
                      std::string_view method, std::string_view path);

// bucket_key(prefix, name, bucket_id(...)) (keys.hpp) written over `key`, whose capacity is reused:
// the per-request form, with no allocation once the string has grown to size.
void assign_bucket_key(std::string& key, std::string_view key_prefix, std::string_view policy_name,
                       key_kind k, std::string_view token_id, std::string_view client_address,
                       std::string_view method, std::string_view path);

}  // namespace ratelimit_proxy::limit
