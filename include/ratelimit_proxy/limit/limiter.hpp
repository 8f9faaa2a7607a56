#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

using decision_handler = std::function<void(decision&&)>;

// What a metered request really cost, per metered check item (same order as the items
// passed to settle), and the per-token usage record to add it to.
struct usage_record {
    std::string_view key;       // usage_key(): {prefix}:usage:<token id>:<day>
    std::string_view days_key;  // usage_days_key(): the set of token ids with usage that day
    std::string_view token_id;
    std::string_view model;  // the request's model as sent ("-" when none)
    std::int64_t input = 0, cached_input = 0, cache_write = 0, output = 0;
    std::int64_t nano_usd = 0;  // 0 when no price is known
    bool estimated = false;     // no usage seen: an estimate was charged
};

// A metered budget's state for one key: spent in the current window, held by requests in
// flight, and the time to the window's reset (0 for a lifetime budget or a bucket).
struct budget_state {
    double used = 0;
    double held = 0;
    double reset_seconds = 0;
};
using budget_handler = std::function<void(bool ok, std::vector<budget_state>&&)>;
// One usage key's counters, "<model>|<what>" -> total; ok false: the store could not answer.
using usage_counters = std::map<std::string, std::int64_t, std::less<>>;
using usage_handler = std::function<void(bool ok, usage_counters&&)>;

// The concurrency leases one request took: its lease id, the keys it holds it under, and
// whether the local store holds them (STORE=memory, or decided while Redis was away).
struct lease_refs {
    std::string_view id;
    std::span<const std::string> keys;
    bool local = false;
};

// Checks every item and consumes from all of them only if every enforced one allows
// (a denied request consumes nothing), atomically. Implementations run on one worker thread;
// the handler is called exactly once, on that thread (possibly before check() returns).
// The items (and the policies they point to) must stay alive until the handler runs.
class limiter {
  public:
    virtual ~limiter() = default;
    virtual void check(std::span<const check_item> items, decision_handler done) = 0;
    // Gives the leases back; fire and forget (never waits for, nor delays, anything).
    virtual void release(const lease_refs& leases) = 0;
    // Extends the leases by `extend` (the renewal interval); fire and forget too.
    virtual void renew(const lease_refs& leases, std::chrono::microseconds extend) = 0;

    // Metered items (check_item::metered, cost = what was held) of an allowed request: drops
    // each hold `hold_id` and charges actual[i] instead; adds `record` (if any) to the
    // per-token usage. Fire and forget; a hold that is never settled expires by itself.
    virtual void settle(std::span<const check_item> items, std::span<const double> actual,
                        std::string_view hold_id, const usage_record* record) = 0;
    // Reads the budgets' state without changing anything (GET /budget). The handler is
    // called once, on this thread; ok false: the store could not answer.
    virtual void inspect(std::span<const check_item> items, budget_handler done) = 0;
    // Reads one usage key (usage_key()) where settle() writes it. Same calling rules.
    virtual void read_usage(std::string_view key, usage_handler done) = 0;
};

}  // namespace ratelimit_proxy::limit
