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
        switch (n.period) {
            case calendar::month:
                r.window_seconds = 30 * 86400.0;
                break;
            case calendar::week:
                r.window_seconds = 7 * 86400.0;
                break;
            case calendar::lifetime:
                r.window_seconds = 0;  // never resets
                break;
            case calendar::none:
                r.window_seconds = n.window_seconds;
                break;
        }
    }
    return r;
}

// The calendar letters of a fixed window's flags (both scripts).
void append_period_flag(std::string& flags, calendar period) {
    switch (period) {
        case calendar::month:
            flags.push_back('m');
            break;
        case calendar::week:
            flags.push_back('w');
            break;
        case calendar::lifetime:
            flags.push_back('l');
            break;
        case calendar::none:
            break;
    }
}

// Shortest round-trip form: Lua's tonumber reads back the same double.
std::string number_string(double v) {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, end);
}

bool holds_metered(const check_item& item) {
    return item.metered && item.source->algo != algorithm::concurrency;
}
}  // namespace

redis_limiter::redis_limiter(redis::connection& conn, const redis::script& script,
                             const redis::script& settle_script, redis::circuit_breaker& breaker,
                             shared_memory_store& fallback, unsigned fallback_instances,
                             bool fail_closed, std::chrono::seconds usage_retention)
    : conn_(conn),
      script_(script),
      settle_script_(settle_script),
      breaker_(breaker),
      fallback_(fallback),
      fallback_share_(1.0 / std::max(1u, fallback_instances)),
      fail_closed_(fail_closed),
      usage_retention_(usage_retention) {}

std::vector<check_item> redis_limiter::fallback_items(std::span<const check_item> items) const {
    // Each instance holds its share of every limit, so the fleet together stays near it.
    std::vector<check_item> local(items.begin(), items.end());
    for (auto& item : local) {
        item.numbers.limit *= fallback_share_;
        if (item.numbers.burst > 0)
            item.numbers.burst = std::max(1.0, item.numbers.burst * fallback_share_);
        if (item.source->algo != algorithm::token_bucket && item.source->algo != algorithm::gcra)
            item.numbers.limit = std::max(1.0, item.numbers.limit);
    }
    return local;
}

decision redis_limiter::decide_without_redis(std::span<const check_item> items) {
    bool closed = false;
    for (const auto& item : items) {
        if (item.shadow)
            continue;
        // Unset: a money budget fails closed, anything else as the process says.
        const bool money = item.metered && item.source->what == meter::usd;
        closed = closed || item.source->fail_closed.value_or(money || fail_closed_);
    }
    if (closed) {
        decision d;
        d.allowed = false;
        d.store_unavailable = true;
        return d;
    }
    decision d = fallback_.check(fallback_items(items));
    d.decided_locally = true;
    remember_local_hold(items, d);
    return d;
}

void redis_limiter::remember_local_hold(std::span<const check_item> items, const decision& d) {
    if (!d.allowed)
        return;
    std::string_view id;
    double seconds = 0;
    for (const auto& item : items) {
        if (holds_metered(item) && !item.hold_id.empty()) {
            id = item.hold_id;
            seconds = std::max(seconds, item.hold_seconds);
        }
    }
    if (id.empty())
        return;
    const std::int64_t now = unix_micros();
    if (local_holds_.size() >= local_holds_prune_at_) {
        std::erase_if(local_holds_, [now](const auto& kv) { return kv.second < now; });
        local_holds_prune_at_ = std::max<std::size_t>(64, 2 * local_holds_.size());
    }
    local_holds_[std::string(id)] = now + static_cast<std::int64_t>(seconds * 1e6);
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
        if (f[0].integer == 2)
            res.held_out = true;  // a metered window full of in-flight holds
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
    const check_item* metered = nullptr;  // the first one: its hold id and time
    for (const auto& item : items)
        if (!metered && holds_metered(item))
            metered = &item;
    arg_storage_.resize(2 + fields * items.size() + (metered ? 2 : 0));
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
        append_period_flag(f[5], item.numbers.period);
        if (holds_metered(item))
            f[5].push_back('h');
    }
    if (metered) {
        const std::size_t h = 2 + fields * items.size();
        arg_storage_[h] = metered->hold_id;
        number_into(arg_storage_[h + 1], arg_numbers_[h + 1], metered->hold_seconds);
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

bool redis_limiter::parse_budget_reply(const redis::reply& r, std::size_t items,
                                       std::vector<budget_state>& out) {
    if (r.type != redis::reply_type::array || r.elements.size() != 3 * items)
        return false;
    out.assign(items, budget_state{});
    for (std::size_t i = 0; i < items; ++i) {
        const auto* f = &r.elements[3 * i];
        if (!parse_double(f[0], out[i].used) || !parse_double(f[1], out[i].held) ||
            !parse_double(f[2], out[i].reset_seconds))
            return false;
    }
    return true;
}

void redis_limiter::settle_args(std::string_view mode, std::span<const check_item> items,
                                std::span<const double> amounts, std::string_view hold_id,
                                const usage_record* record, std::chrono::seconds retention,
                                std::vector<std::string>& storage,
                                std::vector<std::string_view>& keys,
                                std::vector<std::string_view>& args) {
    const bool usage = record && mode == "settle";
    storage.clear();
    storage.reserve(4 + policy_script::settle_fields_per_item * items.size() + 9);
    storage.emplace_back(mode);
    storage.emplace_back();  // Redis's clock
    storage.push_back(std::to_string(items.size()));
    storage.emplace_back(hold_id);
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto& item = items[i];
        storage.emplace_back(policy_script::algorithm_code(item.source->algo));
        storage.push_back(number_string(item.numbers.limit));
        storage.push_back(number_string(item.numbers.window_seconds));
        storage.push_back(number_string(item.numbers.burst));
        storage.push_back(number_string(item.cost));
        storage.push_back(number_string(i < amounts.size() ? amounts[i] : 0));
        std::string flags;
        append_period_flag(flags, item.numbers.period);
        storage.push_back(std::move(flags));
    }
    if (usage) {
        storage.emplace_back(record->token_id);
        storage.emplace_back(record->model);
        for (const std::int64_t v : {record->input, record->cached_input, record->cache_write,
                                     record->output, record->nano_usd})
            storage.push_back(std::to_string(v));
        storage.emplace_back(record->estimated ? "1" : "0");
        storage.push_back(std::to_string(retention.count()));
    }
    keys.clear();
    for (const auto& item : items)
        keys.emplace_back(item.key);
    if (usage) {
        keys.push_back(record->key);
        keys.push_back(record->days_key);
    }
    args.assign(storage.begin(), storage.end());
}

void redis_limiter::settle(std::span<const check_item> items, std::span<const double> actual,
                           std::string_view hold_id, const usage_record* record) {
    std::vector<check_item> metered;
    std::vector<double> used;
    settled_items(items, actual, metered, used);
    if (metered.empty() && !record)
        return;
    if (!hold_id.empty()) {
        if (auto local = local_holds_.find(std::string(hold_id)); local != local_holds_.end()) {
            // Decided by the fallback store: the holds are there, and so goes the record.
            local_holds_.erase(local);
            if (!metered.empty())
                fallback_.settle(fallback_items(metered), used, hold_id);
            if (record)
                fallback_.add_usage(*record, usage_retention_);
            return;
        }
    }
    if (breaker_.is_open()) {
        // Not worth a timeout: the holds expire by themselves (buckets keep the reservation).
        spdlog::debug("budget settle skipped, Redis unavailable (hold {})", hold_id);
        return;
    }
    std::vector<std::string> storage;
    std::vector<std::string_view> keys, args;
    settle_args("settle", metered, used, hold_id, record, usage_retention_, storage, keys, args);
    settle_script_.run(
        conn_, keys, args, [hold = std::string(hold_id)](redis::outcome result, redis::reply&& r) {
            if (result != redis::outcome::ok)
                spdlog::warn("budget settle got no answer from Redis (hold {})", hold);
            else if (r.type == redis::reply_type::error)
                spdlog::warn("budget settle failed (hold {}): {}", hold, r.str);
        });
}

void redis_limiter::read_usage(std::string_view key, usage_handler done) {
    if (breaker_.is_open()) {
        done(false, {});
        return;
    }
    const std::string_view args[] = {"HGETALL", key};
    conn_.command(args, [done = std::move(done)](redis::outcome o, redis::reply&& r) {
        if (o != redis::outcome::ok || r.type != redis::reply_type::array) {
            done(false, {});
            return;
        }
        usage_counters counters;
        for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) {
            const auto& value = r.elements[i + 1].str;
            std::int64_t n = 0;
            const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec == std::errc() && end == value.data() + value.size())
                counters[r.elements[i].str] = n;
        }
        done(true, std::move(counters));
    });
}

void redis_limiter::inspect(std::span<const check_item> items, budget_handler done) {
    // Concurrency items have no budget: zeros, and they are not sent.
    std::vector<check_item> budgets;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (items[i].source->algo == algorithm::concurrency)
            continue;
        budgets.push_back(items[i]);
        index.push_back(i);
    }
    if (budgets.empty()) {
        done(true, std::vector<budget_state>(items.size()));
        return;
    }
    if (breaker_.is_open()) {
        done(false, {});
        return;
    }
    std::vector<std::string> storage;
    std::vector<std::string_view> keys, args;
    settle_args("peek", budgets, {}, {}, nullptr, usage_retention_, storage, keys, args);
    settle_script_.run(
        conn_, keys, args,
        [n = items.size(), index = std::move(index), done = std::move(done)](redis::outcome result,
                                                                             redis::reply&& r) {
            std::vector<budget_state> states;
            if (result != redis::outcome::ok || !parse_budget_reply(r, index.size(), states)) {
                if (result == redis::outcome::ok)
                    spdlog::warn("budget peek failed: {}", r.str);
                done(false, {});
                return;
            }
            std::vector<budget_state> all(n);
            for (std::size_t k = 0; k < index.size(); ++k)
                all[index[k]] = states[k];
            done(true, std::move(all));
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
