#pragma once

#include <functional>
#include <mutex>

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

  private:
    std::mutex mutex_;
    memory_store store_;
    clock_fn now_;
};

// The limiter interface over a shared_memory_store: decides at once, never fails.
class memory_limiter final : public limiter {
  public:
    explicit memory_limiter(shared_memory_store& store) : store_(store) {}
    void check(std::span<const check_item> items, decision_handler done) override {
        done(store_.check(items));
    }
    void release(const lease_refs& leases) override { store_.release(leases); }
    void renew(const lease_refs& leases, std::chrono::microseconds extend) override {
        store_.renew(leases, extend);
    }
    // PLACEHOLDER until the memory twin of lua/settle.lua lands (helper B replaces both).
    void settle(std::span<const check_item>, std::span<const double>, std::string_view,
                const usage_record*) override {}
    void inspect(std::span<const check_item>, budget_handler done) override { done(false, {}); }

  private:
    shared_memory_store& store_;
};

}  // namespace ratelimit_proxy::limit
