#pragma once

#include <string>

#include "ratelimit_proxy/limit/limiter.hpp"
#include "ratelimit_proxy/limit/memory_limiter.hpp"
#include "ratelimit_proxy/redis/circuit_breaker.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::limit {

// One EVALSHA of lua/token_bucket.lua per check. When Redis cannot answer (timeout,
// disconnected, error reply, or the breaker is open) the request is decided by the local
// fallback limiter, or refused with store_unavailable if the policy fails closed: the proxy
// keeps serving, and still limits, while Redis is away.
class redis_limiter final : public limiter {
  public:
    redis_limiter(redis::connection& conn, const redis::script& script, const policy& p,
                  std::string key_prefix, redis::circuit_breaker& breaker,
                  shared_memory_limiter& fallback, bool fail_closed);

    void check(std::string_view bucket_id, std::uint32_t cost, decision_handler done) override;

    // Parses the script's reply; false if it is not the expected shape.
    static bool parse_reply(const redis::reply& r, const policy& p, decision& out);

  private:
    decision decide_without_redis(std::string_view bucket_id, std::uint32_t cost);

    redis::connection& conn_;
    const redis::script& script_;
    const policy& policy_;
    std::string key_prefix_;
    std::string rate_arg_;
    std::string capacity_arg_;
    redis::circuit_breaker& breaker_;
    shared_memory_limiter& fallback_;
    bool fail_closed_;
};

}  // namespace ratelimit_proxy::limit
