#include "ratelimit_proxy/limit/redis_limiter.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>

namespace ratelimit_proxy::limit {

namespace {
std::string number_arg(double v) {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, end);
}

bool parse_double(const redis::reply& r, double& out) {
    if (r.type == redis::reply_type::integer) {
        out = static_cast<double>(r.integer);
        return true;
    }
    if (r.type != redis::reply_type::string)
        return false;
    char* end = nullptr;
    out = std::strtod(r.str.c_str(), &end);
    return end == r.str.c_str() + r.str.size() && !r.str.empty();
}
}  // namespace

redis_limiter::redis_limiter(redis::connection& conn, const redis::script& script, const policy& p,
                             std::string key_prefix, redis::circuit_breaker& breaker,
                             shared_memory_limiter& fallback, bool fail_closed)
    : conn_(conn),
      script_(script),
      policy_(p),
      key_prefix_(std::move(key_prefix)),
      rate_arg_(number_arg(p.rate_per_second)),
      capacity_arg_(number_arg(p.capacity)),
      breaker_(breaker),
      fallback_(fallback),
      fail_closed_(fail_closed) {}

decision redis_limiter::decide_without_redis(std::string_view bucket_id, std::uint32_t cost) {
    if (fail_closed_) {
        decision d;
        d.applied = &policy_;
        d.store_unavailable = true;
        d.retry_after_seconds = 1;
        return d;
    }
    decision d = fallback_.check_now(bucket_id, cost);
    d.decided_locally = true;
    return d;
}

bool redis_limiter::parse_reply(const redis::reply& r, const policy& p, decision& out) {
    if (r.type != redis::reply_type::array || r.elements.size() != 4)
        return false;
    const auto& e = r.elements;
    if (e[0].type != redis::reply_type::integer || e[1].type != redis::reply_type::integer)
        return false;
    double reset = 0, retry = 0;
    if (!parse_double(e[2], reset) || !parse_double(e[3], retry))
        return false;
    out.allowed = e[0].integer == 1;
    out.remaining = e[1].integer;
    out.reset_seconds = reset;
    out.retry_after_seconds = retry;
    out.applied = &p;
    return true;
}

void redis_limiter::check(std::string_view bucket_id, std::uint32_t cost, decision_handler done) {
    if (!breaker_.allow()) {
        done(decide_without_redis(bucket_id, cost));
        return;
    }
    // The hash tag keeps every key of one bucket in one Redis Cluster slot.
    std::string key;
    key.reserve(key_prefix_.size() + policy_.name.size() + bucket_id.size() + 8);
    key.append(key_prefix_).append(":tb:").append(policy_.name).append(":{");
    key.append(bucket_id).append("}");
    char cost_buf[16];
    auto [cost_end, ec] = std::to_chars(cost_buf, cost_buf + sizeof cost_buf, cost);
    const std::string_view keys[] = {key};
    const std::string_view args[] = {rate_arg_, capacity_arg_,
                                     std::string_view(cost_buf, cost_end - cost_buf)};
    script_.run(conn_, keys, args,
                [this, id = std::string(bucket_id), cost, done = std::move(done)](
                    redis::outcome result, redis::reply&& r) {
                    decision d;
                    if (result == redis::outcome::ok && parse_reply(r, policy_, d)) {
                        breaker_.record_success();
                        done(d);
                        return;
                    }
                    // An error reply (OOM, READONLY replica, BUSY script...) counts as a
                    // failure too: the breaker then probes until Redis can decide again.
                    if (result == redis::outcome::ok)
                        spdlog::error("rate limit script failed: {}", r.str);
                    breaker_.record_failure();
                    done(decide_without_redis(id, cost));
                });
}

}  // namespace ratelimit_proxy::limit
