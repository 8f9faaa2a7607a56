#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ratelimit_proxy/limit/name_slots.hpp"
#include "ratelimit_proxy/metrics/cells.hpp"

namespace boost::beast::http {
template <class Allocator>
class basic_fields;
}

namespace ratelimit_proxy::server {

// How one policy (or, for bypass and blocked, the request) was decided: the decision label
// of ratelimit_proxy_decisions_total.
enum class decision_kind : std::uint8_t {
    allowed,
    denied,
    denied_cached,
    shadow_denied,
    bypass,
    blocked,
    fallback_allowed,
    fallback_denied,
    fail_closed,
};
inline constexpr std::size_t decision_kinds = 9;
std::string_view to_string(decision_kind d);  // "denied-cached", ...

enum class auth_failure : std::uint8_t { missing, unknown, unverifiable };
inline constexpr std::size_t auth_failure_kinds = 3;
std::string_view to_string(auth_failure a);

enum class answered_by : std::uint8_t { proxy, upstream };
std::string_view to_string(answered_by a);

// The upstream's own quota as its last response stated it (x-ratelimit-remaining-<name>,
// x-ratelimit-limit-<name>, IETF RateLimit / RateLimit-Remaining / RateLimit-Limit). A few
// names per worker, kept in fixed storage so the scrape can read them without a lock: a name
// is written once, before the count that publishes it.
class upstream_quota {
  public:
    static constexpr std::size_t max_names = 8;
    static constexpr std::size_t max_name_length = 32;

    struct entry {
        std::array<char, max_name_length> name{};
        std::uint8_t length = 0;
        metrics::gauge_cell remaining;
        metrics::gauge_cell limit;
        metrics::gauge_cell has_remaining;  // 1 once a response stated it
        metrics::gauge_cell has_limit;
        metrics::gauge_cell updated;  // unix seconds of the response that said so
    };

    // One pass over the response's fields; cheap when it carries none of them.
    void observe(const boost::beast::http::basic_fields<std::allocator<char>>& fields);
    std::size_t size() const { return published_.load(std::memory_order_acquire); }
    const entry& at(std::size_t i) const { return entries_[i]; }

  private:
    entry* find_or_add(std::string_view name);

    std::array<entry, max_names> entries_;
    std::atomic<std::size_t> published_{0};
};

// Requests per client for the N busiest (metrics.per_client_top_n): a space-saving sketch,
// so memory stays bounded whatever the number of clients. The one per-request lock of the
// metrics, and only when per-client series are asked for; the worker and the scrape are the
// only ones to take it.
class client_tally {
  public:
    struct counts {
        std::uint64_t allowed = 0;
        std::uint64_t denied = 0;
        std::uint64_t error = 0;  // requests it may have had before it was counted
        std::uint64_t total() const { return allowed + denied; }
        std::uint64_t rank() const { return total() + error; }
    };

    explicit client_tally(std::size_t top_n);
    bool enabled() const { return capacity_ > 0; }
    void add(std::string_view client, bool allowed);
    // The counted clients with their counts, and all requests counted.
    std::vector<std::pair<std::string, counts>> snapshot(counts& all) const;

  private:
    std::size_t capacity_;
    mutable std::mutex mutex_;
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::unordered_map<std::string, counts, string_hash, std::equal_to<>> clients_;
    counts all_;
};

// One worker's metrics: written by that worker's thread alone (no lock, no shared cache line),
// read and summed over workers by the scrape (metrics_scrape.cpp). Indexed by the policy and
// tier slots of limit::name_slots.
class worker_metrics {
  public:
    static constexpr std::size_t policies = limit::max_policy_slots;
    static constexpr std::size_t tiers = limit::max_tier_slots;
    static constexpr std::size_t status_classes = 5;  // 1xx..5xx
    static constexpr std::size_t sources = 2;

    explicit worker_metrics(unsigned per_client_top_n);

    void count_decision(std::uint16_t policy, std::uint16_t tier, decision_kind d) {
        decisions_[(policy * tiers + tier) * decision_kinds + static_cast<std::size_t>(d)].add();
    }
    void count_near_limit(std::uint16_t policy, std::uint16_t tier) {
        near_limit_[policy * tiers + tier].add();
    }
    void observe_used(std::uint16_t policy, double ratio) { used_ratio_[policy].observe(ratio); }
    // route: a policy slot (0: "other").
    void count_response(std::uint16_t route, unsigned status, answered_by who) {
        const unsigned cls = status >= 100 && status < 600 ? status / 100 - 1 : 4;
        responses_[(route * status_classes + cls) * sources + static_cast<std::size_t>(who)].add();
    }
    void observe_request(answered_by who, std::chrono::steady_clock::duration d) {
        request_seconds_[static_cast<std::size_t>(who)].observe(seconds(d));
    }
    void count_auth_failure(auth_failure a) { auth_failures_[static_cast<std::size_t>(a)].add(); }

    // Metered requests (budgets): how each was charged (metered_ending's order: usage seen,
    // upstream error, estimated), the tokens and money charged, and per policy what it was
    // charged in its unit (tokens, nano-USD).
    static constexpr std::size_t metered_endings = 3;
    static constexpr std::size_t token_kinds = 4;  // input, cached_input, cache_write, output
    void count_metered_ending(std::size_t ending) { metered_endings_[ending].add(); }
    void count_llm_usage(std::int64_t input, std::int64_t cached_input, std::int64_t cache_write,
                         std::int64_t output, std::int64_t nano_usd) {
        const std::int64_t parts[token_kinds] = {input, cached_input, cache_write, output};
        for (std::size_t i = 0; i < token_kinds; ++i)
            llm_tokens_[i].add(static_cast<std::uint64_t>(std::max<std::int64_t>(parts[i], 0)));
        llm_nano_usd_.add(static_cast<std::uint64_t>(std::max<std::int64_t>(nano_usd, 0)));
    }
    void count_budget_charge(std::uint16_t policy, double amount) {
        if (amount > 0)
            budget_charged_[policy].add(static_cast<std::uint64_t>(amount));
    }
    std::uint64_t metered_ending_count(std::size_t e) const { return metered_endings_[e].value(); }
    std::uint64_t llm_tokens(std::size_t kind) const { return llm_tokens_[kind].value(); }
    std::uint64_t llm_nano_usd() const { return llm_nano_usd_.value(); }
    std::uint64_t budget_charged(std::size_t policy) const {
        return budget_charged_[policy].value();
    }

    metrics::histogram_cell upstream_header_seconds{metrics::duration_bounds};
    metrics::histogram_cell overhead_seconds{metrics::fast_duration_bounds};
    metrics::counter_cell upstream_timeouts;
    metrics::counter_cell upstream_throttled;
    metrics::counter_cell tokens_registered;
    upstream_quota upstream_quota_seen;
    client_tally clients;

    // For the scrape.
    std::uint64_t decisions(std::size_t policy, std::size_t tier, std::size_t d) const {
        return decisions_[(policy * tiers + tier) * decision_kinds + d].value();
    }
    std::uint64_t near_limit(std::size_t policy, std::size_t tier) const {
        return near_limit_[policy * tiers + tier].value();
    }
    const metrics::histogram_cell& used_ratio(std::size_t policy) const {
        return used_ratio_[policy];
    }
    std::uint64_t responses(std::size_t route, std::size_t cls, std::size_t who) const {
        return responses_[(route * status_classes + cls) * sources + who].value();
    }
    const metrics::histogram_cell& request_seconds(std::size_t who) const {
        return request_seconds_[who];
    }
    std::uint64_t auth_failures(std::size_t a) const { return auth_failures_[a].value(); }

    static double seconds(std::chrono::steady_clock::duration d) {
        return std::chrono::duration<double>(d).count();
    }

  private:
    std::vector<metrics::counter_cell> decisions_;
    std::vector<metrics::counter_cell> near_limit_;
    std::deque<metrics::histogram_cell> used_ratio_;  // built in place: cells do not move
    std::vector<metrics::counter_cell> responses_;
    std::array<metrics::histogram_cell, sources> request_seconds_{
        metrics::histogram_cell{metrics::duration_bounds},
        metrics::histogram_cell{metrics::duration_bounds}};
    std::array<metrics::counter_cell, auth_failure_kinds> auth_failures_;
    std::array<metrics::counter_cell, metered_endings> metered_endings_;
    std::array<metrics::counter_cell, token_kinds> llm_tokens_;
    metrics::counter_cell llm_nano_usd_;
    std::array<metrics::counter_cell, policies> budget_charged_;
};

}  // namespace ratelimit_proxy::server
