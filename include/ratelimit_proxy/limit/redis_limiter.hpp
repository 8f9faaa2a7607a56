#pragma once

#include <string>
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
// serving, and still limits, while Redis is away.
class redis_limiter final : public limiter {
  public:
    redis_limiter(redis::connection& conn, const redis::script& script,
                  redis::circuit_breaker& breaker, shared_memory_store& fallback,
                  unsigned fallback_instances, bool fail_closed);

    void check(std::span<const check_item> items, decision_handler done) override;
    // One ZREM per key (local leases: the fallback store's), pipelined with whatever else
    // this loop turn sends.
    void release(const lease_refs& leases) override;
    // ZADD XX INCR and PEXPIRE per key: a lease already released is not brought back.
    void renew(const lease_refs& leases, std::chrono::microseconds extend) override;
    // PLACEHOLDER until lua/settle.lua lands (helper B replaces both).
    void settle(std::span<const check_item>, std::span<const double>, std::string_view,
                const usage_record*) override {}
    void inspect(std::span<const check_item>, budget_handler done) override { done(false, {}); }

    // Parses the script's reply for these items; false if it is not the expected shape.
    static bool parse_reply(const redis::reply& r, std::span<const check_item> items,
                            decision& out);

  private:
    decision decide_without_redis(std::span<const check_item> items);

    redis::connection& conn_;
    const redis::script& script_;
    redis::circuit_breaker& breaker_;
    shared_memory_store& fallback_;
    double fallback_share_;
    bool fail_closed_;
    // Reused between checks: the argument strings of the script call.
    std::vector<std::string> arg_storage_;
    // The number each argument string holds (NaN: none yet): a policy's numbers repeat from
    // one request to the next, and shortest-form double formatting is not cheap.
    std::vector<double> arg_numbers_;
    std::vector<std::string_view> keys_;
    std::vector<std::string_view> args_;
};

}  // namespace ratelimit_proxy::limit
