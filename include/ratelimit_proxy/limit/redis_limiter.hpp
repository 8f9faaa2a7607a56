#pragma once

#include <string>

#include "ratelimit_proxy/limit/limiter.hpp"
#include "ratelimit_proxy/limit/memory_limiter.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::limit {

// One EVALSHA of lua/token_bucket.lua per check. When Redis cannot answer (timeout,
// disconnected, error reply) the request is decided by a local memory_limiter with the
// same policy: the proxy keeps serving, and still limits, while Redis is away.
class redis_limiter final : public limiter {
  public:
    redis_limiter(redis::connection& conn, const redis::script& script, const policy& p,
                  std::string key_prefix);

    void check(std::string_view bucket_id, std::uint32_t cost, decision_handler done) override;

    // Parses the script's reply; false if it is not the expected shape.
    static bool parse_reply(const redis::reply& r, const policy& p, decision& out);

  private:
    redis::connection& conn_;
    const redis::script& script_;
    const policy& policy_;
    std::string key_prefix_;
    std::string rate_arg_;
    std::string capacity_arg_;
    memory_limiter fallback_;
};

}  // namespace ratelimit_proxy::limit
