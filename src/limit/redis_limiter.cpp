#include "ratelimit_proxy/limit/redis_limiter.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>
#include <limits>

#include "ratelimit_proxy/limit/policy_script.hpp"

namespace ratelimit_proxy::limit {

namespace {
void number_into(std::string& out, double& formatted, double v) {
    if (v == formatted)
        return;
    formatted = v;
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.assign(buf, end);
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

policy_result result_shape(const check_item& item) {
    policy_result r;
    r.source = item.source;
    r.shadow = item.shadow;
    const limits& n = item.numbers;
    if (item.source->algo == algorithm::concurrency) {
        r.quota = n.limit;  // slots; no window
    } else if (item.source->algo == algorithm::token_bucket ||
               item.source->algo == algorithm::gcra) {
        r.quota = n.capacity();
        r.window_seconds = n.capacity() / n.rate_per_second();
    } else {
        r.quota = n.limit;
        r.window_seconds = n.period == calendar::month ? 30 * 86400.0 : n.window_seconds;
    }
    return r;
}
}  // namespace

redis_limiter::redis_limiter(redis::connection& conn, const redis::script& script,
                             redis::circuit_breaker& breaker, shared_memory_store& fallback,
                             unsigned fallback_instances, bool fail_closed)
    : conn_(conn),
      script_(script),
      breaker_(breaker),
      fallback_(fallback),
      fallback_share_(1.0 / std::max(1u, fallback_instances)),
      fail_closed_(fail_closed) {}

decision redis_limiter::decide_without_redis(std::span<const check_item> items) {
    bool closed = false;
    for (const auto& item : items)
        closed = closed || (!item.shadow && item.source->fail_closed.value_or(fail_closed_));
    if (closed) {
        decision d;
        d.allowed = false;
        d.store_unavailable = true;
        return d;
    }
    // Each instance holds its share of every limit, so the fleet together stays near it.
    std::vector<check_item> local(items.begin(), items.end());
    for (auto& item : local) {
        item.numbers.limit *= fallback_share_;
        if (item.numbers.burst > 0)
            item.numbers.burst = std::max(1.0, item.numbers.burst * fallback_share_);
        if (item.source->algo != algorithm::token_bucket && item.source->algo != algorithm::gcra)
            item.numbers.limit = std::max(1.0, item.numbers.limit);
    }
    decision d = fallback_.check(local);
    d.decided_locally = true;
    return d;
}

bool redis_limiter::parse_reply(const redis::reply& r, std::span<const check_item> items,
                                decision& out) {
    const auto& e = r.elements;
    if (r.type != redis::reply_type::array || e.size() != 1 + 4 * items.size() ||
        e[0].type != redis::reply_type::integer)
        return false;
    out.results.clear();
    out.results.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto* f = &e[1 + 4 * i];
        policy_result res = result_shape(items[i]);
        if (f[0].type != redis::reply_type::integer || f[1].type != redis::reply_type::integer ||
            !parse_double(f[2], res.reset_seconds) || !parse_double(f[3], res.retry_after_seconds))
            return false;
        res.allowed = f[0].integer == 1;
        res.remaining = f[1].integer;
        out.results.push_back(res);
    }
    out.allowed = e[0].integer == 1;
    out.choose_tightest();
    return true;
}

void redis_limiter::check(std::span<const check_item> items, decision_handler done) {
    if (items.empty()) {
        done(decision{});
        return;
    }
    if (!breaker_.allow()) {
        done(decide_without_redis(items));
        return;
    }
    const std::size_t fields = policy_script::fields_per_item;
    arg_storage_.resize(2 + fields * items.size());
    arg_numbers_.resize(arg_storage_.size(), std::numeric_limits<double>::quiet_NaN());
    arg_storage_[0].clear();  // Redis's clock
    arg_storage_[1] = std::to_string(items.size());
    keys_.clear();
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto& item = items[i];
        keys_.push_back(item.key);
        std::string* f = &arg_storage_[2 + fields * i];
        f[0] = policy_script::algorithm_code(item.source->algo);
        double* formatted = &arg_numbers_[2 + fields * i];
        number_into(f[1], formatted[1], item.numbers.limit);
        number_into(f[2], formatted[2], item.numbers.window_seconds);
        if (item.source->algo == algorithm::concurrency) {
            f[3] = item.lease_id;
            formatted[3] = std::numeric_limits<double>::quiet_NaN();
        } else {
            number_into(f[3], formatted[3], item.numbers.burst);
        }
        f[4] = std::to_string(item.cost);
        f[5].clear();
        if (item.shadow)
            f[5].push_back('s');
        if (item.numbers.period == calendar::month)
            f[5].push_back('m');
    }
    args_.assign(arg_storage_.begin(), arg_storage_.end());
    script_.run(conn_, keys_, args_,
                [this, items, done = std::move(done)](redis::outcome result, redis::reply&& r) {
                    decision d;
                    if (result == redis::outcome::ok && parse_reply(r, items, d)) {
                        breaker_.record_success();
                        done(std::move(d));
                        return;
                    }
                    // An error reply (OOM, READONLY replica, BUSY script...) counts as a
                    // failure too: the breaker then probes until Redis can decide again.
                    if (result == redis::outcome::ok)
                        spdlog::error("rate limit script failed: {}", r.str);
                    breaker_.record_failure();
                    done(decide_without_redis(items));
                });
}

void redis_limiter::release(const lease_refs& leases) {
    if (leases.local)
        return fallback_.release(leases);
    for (const auto& key : leases.keys) {
        const std::string_view args[] = {"ZREM", key, leases.id};
        // Unanswered (Redis away): the lease expires on its own within the lease time.
        conn_.command(args, [](redis::outcome, redis::reply&&) {});
    }
}

void redis_limiter::renew(const lease_refs& leases, std::chrono::microseconds extend) {
    if (leases.local)
        return fallback_.renew(leases, extend);
    const std::string by = std::to_string(extend.count());
    // As the script sets it on acquire: two lease times (here three renewal intervals at
    // least) and a second, from now.
    const std::string ttl_ms = std::to_string(6 * extend.count() / 1000 + 1000);
    for (const auto& key : leases.keys) {
        const std::string_view zadd[] = {"ZADD", key, "XX", "INCR", by, leases.id};
        conn_.command(zadd, [](redis::outcome, redis::reply&&) {});
        const std::string_view pexpire[] = {"PEXPIRE", key, ttl_ms};
        conn_.command(pexpire, [](redis::outcome, redis::reply&&) {});
    }
}

}  // namespace ratelimit_proxy::limit
