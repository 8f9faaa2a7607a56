#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ratelimit_proxy/limit/limiter.hpp"
#include "ratelimit_proxy/limit/memory_limiter.hpp"
#include "ratelimit_proxy/redis/circuit_breaker.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::limit {

// One EVALSHA of lua/policies.lua per check, whatever the number of policies. When Redis
// cannot answer (timeout, disconnected, error reply, or the breaker is open) the request is
// decided by the local fallback store with each limit divided by the number of instances, or
// refused with store_unavailable if one of its policies fails closed: the proxy keeps
// serving, and still limits, while Redis is away. A money (usd) budget whose policy does not
// say fails closed: a local share of a money budget, per instance, is no budget.
// Metered requests are settled by one EVALSHA of lua/settle.lua.
class redis_limiter final : public limiter {
  public:
    redis_limiter(redis::connection& conn, const redis::script& script,
                  const redis::script& settle_script, redis::circuit_breaker& breaker,
                  shared_memory_store& fallback, unsigned fallback_instances, bool fail_closed,
                  std::chrono::seconds usage_retention = default_usage_retention);

    void check(std::span<const check_item> items, decision_handler done) override;
    // One ZREM per key (local leases: the fallback store's), pipelined with whatever else
    // this loop turn sends.
    void release(const lease_refs& leases) override;
    // ZADD XX INCR and PEXPIRE per key: a lease already released is not brought back.
    void renew(const lease_refs& leases, std::chrono::microseconds extend) override;
    // One EVALSHA of settle.lua (mode settle) for the metered items (others are skipped) and
    // the usage record; fire and forget, a failure is logged at warn (the holds then expire
    // on their own). A hold lives where its check was decided: holds this limiter took in
    // the fallback store (Redis away at check time; it remembers their ids until they
    // expire) are settled there, with the usage record kept in the fallback's memory.
    void settle(std::span<const check_item> items, std::span<const double> actual,
                std::string_view hold_id, const usage_record* record) override;
    // One EVALSHA of settle.lua (mode peek); ok false when Redis cannot answer. Concurrency
    // items read as zeros.
    void inspect(std::span<const check_item> items, budget_handler done) override;
    // HGETALL of the key.
    void read_usage(std::string_view key, usage_handler done) override;

    // Parses the script's reply for these items; false if it is not the expected shape.
    static bool parse_reply(const redis::reply& r, std::span<const check_item> items,
                            decision& out);
    // Parses settle.lua's reply (3 strings per item); false if it is not the expected shape.
    static bool parse_budget_reply(const redis::reply& r, std::size_t items,
                                   std::vector<budget_state>& out);
    // settle.lua's arguments (policy_script.hpp): KEYS and ARGV for `mode` over items, with
    // amounts[i] (settle: what was used; credit: what to give back; peek: ignored) and, in
    // mode settle, the usage record. The views point into `storage` and the items.
    static void settle_args(std::string_view mode, std::span<const check_item> items,
                            std::span<const double> amounts, std::string_view hold_id,
                            const usage_record* record, std::chrono::seconds retention,
                            std::vector<std::string>& storage, std::vector<std::string_view>& keys,
                            std::vector<std::string_view>& args);

  private:
    decision decide_without_redis(std::span<const check_item> items);
    // The items as the fallback store holds them: each limit an instance's share.
    std::vector<check_item> fallback_items(std::span<const check_item> items) const;
    // Remembers the hold of a request the fallback store admitted.
    void remember_local_hold(std::span<const check_item> items, const decision& d);

    redis::connection& conn_;
    const redis::script& script_;
    const redis::script& settle_script_;
    redis::circuit_breaker& breaker_;
    shared_memory_store& fallback_;
    double fallback_share_;
    bool fail_closed_;
    std::chrono::seconds usage_retention_;
    // Hold ids taken in the fallback store -> when they expire (Unix µs): settle() applies
    // those there. Pruned of expired ids as it grows.
    std::unordered_map<std::string, std::int64_t> local_holds_;
    std::size_t local_holds_prune_at_ = 64;
    // Reused between checks: the argument strings of the script call.
    std::vector<std::string> arg_storage_;
    // The number each argument string holds (NaN: none yet): a policy's numbers repeat from
    // one request to the next, and shortest-form double formatting is not cheap.
    std::vector<double> arg_numbers_;
    std::vector<std::string_view> keys_;
    std::vector<std::string_view> args_;
};

}  // namespace ratelimit_proxy::limit
