#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ratelimit_proxy/limit/decision.hpp"
#include "ratelimit_proxy/limit/limiter.hpp"

namespace ratelimit_proxy::limit {

// The five algorithms of lua/policies.lua, in process memory, with the same decisions for
// the same sequence of (items, time): the in-memory store (STORE=memory), the local fallback
// while Redis is away, and the twin the equivalence tests compare the Lua script with.
// Not locked: one owner thread, or wrapped by shared_memory_limiter.
class memory_store {
  public:
    // Decides all items at now_us (Unix time in microseconds) and consumes from all of them
    // only if every enforced item allows. Fills results, allowed and tightest. Metered fixed
    // windows hold their cost under item.hold_id instead of counting it (policies.lua).
    decision check(std::span<const check_item> items, std::int64_t now_us);

    // lua/settle.lua's three modes, one budget_state per item (tb, gcra, sw, fw; concurrency
    // items are left alone and read as zeros). settle: drops each fixed window's hold
    // `hold_id` and charges actual[i] into its current window; buckets get back
    // item.cost - actual[i] (the reservation minus what was used; negative: a debt).
    std::vector<budget_state> settle(std::span<const check_item> items,
                                     std::span<const double> actual, std::string_view hold_id,
                                     std::int64_t now_us);
    // Reads without changing anything.
    std::vector<budget_state> peek(std::span<const check_item> items, std::int64_t now_us);
    // Takes amounts[i] off the current window's count of fixed window items (below 0: extra
    // room this window). nullopt, and nothing changed, if an item is not a fixed window.
    std::optional<std::vector<budget_state>> credit(std::span<const check_item> items,
                                                    std::span<const double> amounts,
                                                    std::int64_t now_us);

    // Per-token usage (settle.lua's usage hash and day set), kept retention_s seconds after
    // its last addition.
    void add_usage(const usage_record& r, std::int64_t retention_s, std::int64_t now_us);
    // The counters of one usage key, "<model>|<what>" -> total (empty: none).
    std::map<std::string, std::int64_t> usage(std::string_view key, std::int64_t now_us) const;
    // The token ids of one usage-days key.
    std::set<std::string> usage_tokens(std::string_view days_key, std::int64_t now_us) const;

    // Drops a bucket or lease set (admin reset).
    void erase(std::string_view key);
    std::size_t size() const { return buckets_.size() + leases_.size(); }

    // Concurrency leases (check() takes them): given back, or extended by extend_us.
    void release(std::string_view key, std::string_view lease_id);
    void renew(std::string_view key, std::string_view lease_id, std::int64_t extend_us);
    // The leases of a concurrency key still live at now_us.
    std::size_t live_leases(std::string_view key, std::int64_t now_us) const;

  private:
    // A metered fixed window's reservation: the hash field "h:<id>" = "<amount> <expiry>".
    struct hold {
        std::string id;
        double amount = 0;
        double expires_us = 0;  // live while now <= expires_us
    };
    // One stored state per key, whatever the algorithm (the fields each uses are documented
    // in memory_store.cpp beside the Lua equivalent).
    struct bucket {
        double a = 0;
        double b = 0;
        double c = 0;
        std::int64_t expires_us = 0;
        std::vector<hold> holds;  // metered fixed windows only
    };
    struct lease {
        std::string id;
        std::int64_t expires_us = 0;
    };
    struct usage_entry {
        std::map<std::string, std::int64_t> fields;
        std::set<std::string> tokens;  // days keys only
        std::int64_t expires_us = 0;
    };
    enum class budget_op { settle, peek, credit };
    budget_state budget_one(const check_item& it, budget_op op, double reserved, double amount,
                            std::string_view hold_id, std::int64_t now_us);
    void forget_expired(std::int64_t now_us);

    std::unordered_map<std::string, bucket> buckets_;
    std::unordered_map<std::string, usage_entry> usage_;
    // Few leases per key (at most the limit live): a vector beats a tree.
    std::unordered_map<std::string, std::vector<lease>> leases_;
    std::int64_t next_sweep_us_ = 0;
};

// Unix time in microseconds from the system clock (the memory store's default clock).
std::int64_t unix_micros();

// Start and end (Unix seconds) of the UTC calendar month containing t.
void utc_month_bounds(std::int64_t unix_seconds, std::int64_t& start, std::int64_t& end);

}  // namespace ratelimit_proxy::limit
