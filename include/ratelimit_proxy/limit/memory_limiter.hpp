#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "ratelimit_proxy/limit/limiter.hpp"
#include "ratelimit_proxy/limit/memory_store.hpp"

namespace ratelimit_proxy::limit {

// A memory_store shared by all worker threads of a process, so a limit holds whichever thread
// a request lands on: the store for STORE=memory, and the local fallback while Redis is away.
class shared_memory_store {
  public:
    using clock_fn = std::function<std::int64_t()>;  // Unix microseconds

    explicit shared_memory_store(clock_fn now = {}) : now_(now ? std::move(now) : unix_micros) {}

    decision check(std::span<const check_item> items) {
        std::lock_guard lock(mutex_);
        return store_.check(items, now_());
    }
    void erase(std::string_view key) {
        std::lock_guard lock(mutex_);
        store_.erase(key);
    }
    void release(const lease_refs& leases) {
        std::lock_guard lock(mutex_);
        for (const auto& key : leases.keys)
            store_.release(key, leases.id);
    }
    void renew(const lease_refs& leases, std::chrono::microseconds extend) {
        std::lock_guard lock(mutex_);
        for (const auto& key : leases.keys)
            store_.renew(key, leases.id, extend.count());
    }
    std::size_t live_leases(std::string_view key) {
        std::lock_guard lock(mutex_);
        return store_.live_leases(key, now_());
    }
    // memory_store::settle / peek / credit at the store's clock.
    std::vector<budget_state> settle(std::span<const check_item> items,
                                     std::span<const double> actual, std::string_view hold_id) {
        std::lock_guard lock(mutex_);
        return store_.settle(items, actual, hold_id, now_());
    }
    std::vector<budget_state> peek(std::span<const check_item> items) {
        std::lock_guard lock(mutex_);
        return store_.peek(items, now_());
    }
    std::optional<std::vector<budget_state>> credit(std::span<const check_item> items,
                                                    std::span<const double> amounts) {
        std::lock_guard lock(mutex_);
        return store_.credit(items, amounts, now_());
    }
    // Per-token usage in memory (STORE=memory, or settled while Redis was away).
    void add_usage(const usage_record& r, std::chrono::seconds retention) {
        std::lock_guard lock(mutex_);
        store_.add_usage(r, retention.count(), now_());
    }
    std::map<std::string, std::int64_t> usage(std::string_view key) {
        std::lock_guard lock(mutex_);
        return store_.usage(key, now_());
    }
    std::set<std::string> usage_tokens(std::string_view days_key) {
        std::lock_guard lock(mutex_);
        return store_.usage_tokens(days_key, now_());
    }

  private:
    std::mutex mutex_;
    memory_store store_;
    clock_fn now_;
};

// How long a token's daily usage record is kept (EXPIRE after its last addition).
inline constexpr std::chrono::seconds default_usage_retention{90 * 86400};

// The metered items of a check whose reservation settle.lua settles (concurrency items are
// never metered), and what each really cost: settle()'s items and actual, filtered.
inline void settled_items(std::span<const check_item> items, std::span<const double> actual,
                          std::vector<check_item>& out_items, std::vector<double>& out_actual) {
    out_items.clear();
    out_actual.clear();
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto& it = items[i];
        if (!it.metered || !it.source || it.source->algo == algorithm::concurrency)
            continue;
        out_items.push_back(it);
        out_actual.push_back(i < actual.size() ? actual[i] : it.cost);
    }
}

// The limiter interface over a shared_memory_store: decides at once, never fails.
class memory_limiter final : public limiter {
  public:
    explicit memory_limiter(shared_memory_store& store,
                            std::chrono::seconds usage_retention = default_usage_retention)
        : store_(store), usage_retention_(usage_retention) {}
    void check(std::span<const check_item> items, decision_handler done) override {
        done(store_.check(items));
    }
    void release(const lease_refs& leases) override { store_.release(leases); }
    void renew(const lease_refs& leases, std::chrono::microseconds extend) override {
        store_.renew(leases, extend);
    }
    // Settles the metered items (others are skipped) and keeps the usage record in memory
    // (shared_memory_store::usage), so STORE=memory has per-token usage too.
    void settle(std::span<const check_item> items, std::span<const double> actual,
                std::string_view hold_id, const usage_record* record) override {
        std::vector<check_item> metered;
        std::vector<double> used;
        settled_items(items, actual, metered, used);
        if (!metered.empty())
            store_.settle(metered, used, hold_id);
        if (record)
            store_.add_usage(*record, usage_retention_);
    }
    void inspect(std::span<const check_item> items, budget_handler done) override {
        done(true, store_.peek(items));
    }
    void read_usage(std::string_view key, usage_handler done) override {
        auto counters = store_.usage(key);
        done(true, usage_counters(counters.begin(), counters.end()));
    }

  private:
    shared_memory_store& store_;
    std::chrono::seconds usage_retention_;
};

}  // namespace ratelimit_proxy::limit
