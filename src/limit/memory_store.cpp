#include "ratelimit_proxy/limit/memory_store.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <vector>

// The in-memory twin of lua/policies.lua. Every formula below is the Lua one, in the same
// order of operations, so that both reach bit-identical doubles (the equivalence tests
// compare them). Change one, change the other.
//
// bucket fields per algorithm (the Lua storage beside it):
//   tb    a = tokens (%.12f), b = ts (µs)         hash { tokens, ts }
//   gcra  a = tat (µs)                            string tat
//   sw    a = w (window start µs), b = c, c = p   hash { w, c, p }
//   fw    a = w (window start µs), b = c          hash { w, c }
//   cc    leases_[key]: id -> expiry (µs)          zset { id: expiry }

namespace ratelimit_proxy::limit {

namespace {

// Lua's tonumber(string.format(pattern, x)): printing with `decimals` and reading back. A
// whole number comes back as itself (-0 included), as the script's shortcut assumes; other
// values go through to_chars, which prints exactly as printf in the C locale, and from_chars,
// which rounds correctly as strtod does, both without printf's and strtod's overhead.
double rounded(double x, int decimals) {
    if (x == std::floor(x))
        return x;
    // Not whole, so below 2^52 in magnitude (or NaN): at most 16 digits, a sign, the point
    // and 12 decimals.
    char buf[64];
    const auto end =
        std::to_chars(buf, buf + sizeof buf, x, std::chars_format::fixed, decimals).ptr;
    double back = x;
    std::from_chars(buf, end, back);
    return back;
}

// The 6-decimal grid every stored value and every compared quantity is rounded to.
double r6(double x) {
    return rounded(x, 6);
}
// How tb stores its level (no drift).
double r12(double x) {
    return rounded(x, 12);
}
// How integers (times, counts) are stored.
double r0(double x) {
    return rounded(x, 0);
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        --q;
    return q;
}

// Howard Hinnant's days_from_civil / civil_from_days, as in the Lua script.
std::int64_t days_from_civil(std::int64_t y, std::int64_t m, std::int64_t d) {
    if (m <= 2)
        --y;
    const std::int64_t era = floor_div(y, 400);
    const std::int64_t yoe = y - era * 400;
    const std::int64_t mp = m > 2 ? m - 3 : m + 9;
    const std::int64_t doy = (153 * mp + 2) / 5 + d - 1;
    const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, std::int64_t& m) {
    z += 719468;
    const std::int64_t era = floor_div(z, 146097);
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        ++y;
}

// A bucket's content as one algorithm sees it; present == false: no key (fresh).
struct cell {
    bool present = false;
    double a = 0, b = 0, c = 0;
};

// What one item decided, and what it would store if consumed.
struct outcome {
    bool allowed = false;
    double before_remaining = 0, after_remaining = 0;
    double before_reset = 0, after_reset = 0;
    double retry = 0;
    double quota = 0, window_seconds = 0;
    double a = 0, b = 0, c = 0;  // the state to store
    std::int64_t ttl_ms = 0;     // PEXPIRE / PX
};

outcome token_bucket(const check_item& it, const cell& s, double now) {
    const double cost = it.cost;
    const double rate = it.numbers.limit / it.numbers.window_seconds;
    const double cap = it.numbers.burst > 0 ? it.numbers.burst : it.numbers.limit;
    double tokens = s.a, ts = s.b;
    if (!s.present) {
        tokens = cap;
        ts = now;
    }
    double elapsed = now - ts;
    if (elapsed < 0)
        elapsed = 0;
    // Kept with 12 decimals, decided on the 6-decimal grid (as the script does).
    const double level = std::min(cap, tokens + elapsed * rate / 1000000);
    tokens = r6(level);
    outcome o;
    o.allowed = tokens >= cost;
    double after_level = level;
    if (o.allowed) {
        after_level = level - cost;
        if (after_level < 0)
            after_level = 0;  // level was a hair under cost
    }
    const double after = r6(after_level);
    o.after_remaining = std::floor(after);
    o.after_reset = (cap - after) / rate;
    o.before_remaining = std::floor(tokens);
    o.before_reset = (cap - tokens) / rate;
    if (o.allowed)
        o.retry = 0;
    else if (cost > cap)
        o.retry = it.numbers.window_seconds;  // never possible
    else
        o.retry = (cost - tokens) / rate;
    o.quota = cap;
    o.window_seconds = cap / rate;
    o.a = r12(after_level);
    o.b = r0(now);
    o.ttl_ms = static_cast<std::int64_t>(std::ceil((cap - after) / rate * 1000) + 1000);
    return o;
}

outcome gcra(const check_item& it, const cell& s, double now) {
    const double cost = it.cost;
    const double rate = it.numbers.limit / it.numbers.window_seconds;
    const double cap = it.numbers.burst > 0 ? it.numbers.burst : it.numbers.limit;
    const double t = 1000000 / rate;
    const double tat = s.present ? s.a : now;
    const double tat0 = std::max(tat, now);
    const double new_tat = tat0 + cost * t;
    // tat0 - now + cost*T <= cap*T, in tokens and on tb's 6-decimal grid.
    const double avail = r6(cap - (tat0 - now) / t);
    outcome o;
    o.allowed = avail >= cost;
    o.after_remaining = std::floor(r6(cap - (new_tat - now) / t));
    o.after_reset = (new_tat - now) / 1000000;
    o.before_remaining = std::floor(avail);
    o.before_reset = (tat0 - now) / 1000000;
    if (o.allowed)
        o.retry = 0;
    else if (cost > cap)
        o.retry = it.numbers.window_seconds;
    else
        o.retry = (tat0 + cost * t - cap * t - now) / 1000000;
    o.quota = cap;
    o.window_seconds = cap / rate;
    const double stored = r6(new_tat);
    o.a = stored;
    o.ttl_ms = static_cast<std::int64_t>(std::ceil((stored - now) / 1000) + 1000);
    return o;
}

// Weighted two-window counter; see the Lua script for its precision.
outcome sliding_window(const check_item& it, const cell& s, double now) {
    const double cost = it.cost;
    const double limit = it.numbers.limit;
    const double ww = it.numbers.window_seconds * 1000000;
    const double cur = std::floor(now / ww) * ww;
    double c = s.present ? s.b : 0, p = s.present ? s.c : 0;
    if (!s.present || s.a != cur) {
        p = s.present && s.a == cur - ww ? c : 0;
        c = 0;
    }
    const double weight = (ww - (now - cur)) / ww;
    const double est = r6(p * weight + c);
    outcome o;
    o.allowed = r6(est + cost) <= limit;
    double c_after = c, est_after = est;
    if (o.allowed) {
        c_after = c + cost;
        est_after = r6(p * weight + c_after);
    }
    auto reset_of = [&](double cc) {
        if (cc > 0)
            return (cur + 2 * ww - now) / 1000000;
        if (p > 0)
            return (cur + ww - now) / 1000000;
        return 0.0;
    };
    o.after_remaining = std::floor(r6(limit - est_after));
    o.after_reset = reset_of(c_after);
    o.before_remaining = std::floor(r6(limit - est));
    o.before_reset = reset_of(c);
    if (o.allowed) {
        o.retry = 0;
    } else if (cost > limit) {
        o.retry = it.numbers.window_seconds;
    } else {
        double at;
        const double room = limit - c - cost;
        if (room >= 0 && p > 0)
            at = cur + ww - room * ww / p;  // this window, once p's weight has fallen enough
        else if (c > 0)
            at = cur + 2 * ww - (limit - cost) * ww / c;  // next window, c weighted down
        else
            at = cur + ww;
        o.retry = (at - now) / 1000000;
        if (o.retry < 0)
            o.retry = 0;
    }
    o.quota = limit;
    o.window_seconds = it.numbers.window_seconds;
    o.a = r0(cur);
    o.b = r0(c_after);
    o.c = r0(p);
    o.ttl_ms = static_cast<std::int64_t>(std::ceil(2 * ww / 1000) + 1000);
    return o;
}

outcome fixed_window(const check_item& it, const cell& s, double now) {
    const double cost = it.cost;
    const double limit = it.numbers.limit;
    double ws, we, window;
    if (it.numbers.period == calendar::month) {
        std::int64_t start = 0, end = 0;
        utc_month_bounds(static_cast<std::int64_t>(std::floor(now / 1000000)), start, end);
        ws = static_cast<double>(start) * 1000000;
        we = static_cast<double>(end) * 1000000;
        window = static_cast<double>(end - start);
    } else {
        const double ww = it.numbers.window_seconds * 1000000;
        ws = std::floor(now / ww) * ww;
        we = ws + ww;
        window = it.numbers.window_seconds;
    }
    double c = s.present ? s.b : 0;
    if (!s.present || s.a != ws)
        c = 0;
    outcome o;
    o.allowed = c + cost <= limit;
    const double c_after = o.allowed ? c + cost : c;
    o.after_remaining = std::floor(r6(limit - c_after));
    o.after_reset = (we - now) / 1000000;
    o.before_remaining = std::floor(r6(limit - c));
    o.before_reset = o.after_reset;
    // Denied: the window's end, even when cost > limit (it never fits; see the Lua script).
    o.retry = o.allowed ? 0 : (we - now) / 1000000;
    o.quota = limit;
    o.window_seconds = window;
    o.a = r0(ws);
    o.b = r0(c_after);
    o.ttl_ms = static_cast<std::int64_t>(std::ceil((we - now) / 1000) + 1000);
    return o;
}

// Concurrency: `held` live leases; see the Lua script. The state (the new lease) is written
// by check() itself, as it lives in leases_, not in a bucket.
outcome concurrency(const check_item& it, double held) {
    const double cost = it.cost;
    const double limit = it.numbers.limit;
    outcome o;
    o.allowed = held + cost <= limit;
    o.before_remaining = std::floor(r6(limit - held));
    o.after_remaining = o.allowed ? std::floor(r6(limit - held - cost)) : o.before_remaining;
    o.before_reset = o.before_remaining >= 1 ? 0 : 1;
    o.after_reset = o.after_remaining >= 1 ? 0 : 1;
    o.retry = o.allowed ? 0 : 1;
    o.quota = limit;
    o.window_seconds = 0;
    return o;
}

}  // namespace

std::size_t memory_store::live_leases(std::string_view key, std::int64_t now_us) const {
    auto found = leases_.find(std::string(key));
    if (found == leases_.end())
        return 0;
    return static_cast<std::size_t>(std::ranges::count_if(
        found->second, [now_us](const lease& l) { return now_us <= l.expires_us; }));
}

void memory_store::release(std::string_view key, std::string_view lease_id) {
    auto found = leases_.find(std::string(key));
    if (found == leases_.end())
        return;
    std::erase_if(found->second, [lease_id](const lease& l) { return l.id == lease_id; });
    if (found->second.empty())
        leases_.erase(found);
}

void memory_store::renew(std::string_view key, std::string_view lease_id, std::int64_t extend_us) {
    auto found = leases_.find(std::string(key));
    if (found == leases_.end())
        return;
    for (auto& l : found->second)
        if (l.id == lease_id)
            l.expires_us += extend_us;  // ZADD XX INCR
}

decision memory_store::check(std::span<const check_item> items, std::int64_t now_us) {
    forget_expired(now_us);
    const double now = static_cast<double>(now_us);

    // First decide every item without writing anything, as the script does.
    std::vector<outcome> outcomes;
    outcomes.reserve(items.size());
    decision d;
    d.allowed = true;
    for (const auto& it : items) {
        cell s;
        if (auto found = buckets_.find(it.key);
            found != buckets_.end() && now_us <= found->second.expires_us) {
            // Redis drops a key once its time is past, not at it: same test here.
            s.present = true;
            s.a = found->second.a;
            s.b = found->second.b;
            s.c = found->second.c;
        }
        const algorithm algo = it.source ? it.source->algo : algorithm::token_bucket;
        outcome o;
        switch (algo) {
            case algorithm::concurrency:
                o = concurrency(it, static_cast<double>(live_leases(it.key, now_us)));
                break;
            case algorithm::token_bucket:
                o = token_bucket(it, s, now);
                break;
            case algorithm::gcra:
                o = gcra(it, s, now);
                break;
            case algorithm::sliding_window:
                o = sliding_window(it, s, now);
                break;
            case algorithm::fixed_window:
                o = fixed_window(it, s, now);
                break;
        }
        if (!o.allowed && !it.shadow)
            d.allowed = false;
        outcomes.push_back(o);
    }

    // Then consume from every item that allows, or from none at all.
    d.results.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto& it = items[i];
        const auto& o = outcomes[i];
        const bool consumed = d.allowed && o.allowed;
        const bool leases = it.source && it.source->algo == algorithm::concurrency;
        if (consumed && leases) {
            // A key that held another algorithm's state starts clean (the script DELs a key
            // of the wrong Redis type before writing).
            buckets_.erase(it.key);
            auto& set = leases_[it.key];
            std::erase_if(set, [now_us](const lease& l) { return now_us > l.expires_us; });
            set.push_back({std::string(it.lease_id),
                           static_cast<std::int64_t>(r0(now + it.numbers.window_seconds * 1e6))});
        } else if (consumed) {
            leases_.erase(it.key);
            buckets_[it.key] = bucket{o.a, o.b, o.c, now_us + o.ttl_ms * 1000};
        }
        policy_result r;
        r.source = it.source;
        r.allowed = o.allowed;
        r.shadow = it.shadow;
        r.remaining = std::max<std::int64_t>(
            0, static_cast<std::int64_t>(consumed ? o.after_remaining : o.before_remaining));
        // The script returns these as %.6f strings: round the same way.
        r.reset_seconds = r6(consumed ? o.after_reset : o.before_reset);
        r.retry_after_seconds = r6(o.retry);
        r.quota = o.quota;
        r.window_seconds = o.window_seconds;
        d.results.push_back(r);
    }
    d.choose_tightest();
    return d;
}

void memory_store::erase(std::string_view key) {
    buckets_.erase(std::string(key));
    leases_.erase(std::string(key));
}

void memory_store::forget_expired(std::int64_t now_us) {
    // A full sweep costs O(size): at most every 10 s. Expired buckets are ignored on read
    // anyway, so the sweep only bounds memory.
    if (now_us < next_sweep_us_)
        return;
    next_sweep_us_ = now_us + 10'000'000;
    std::erase_if(buckets_, [&](const auto& kv) { return now_us > kv.second.expires_us; });
    for (auto it = leases_.begin(); it != leases_.end();) {
        std::erase_if(it->second, [now_us](const lease& l) { return now_us > l.expires_us; });
        it = it->second.empty() ? leases_.erase(it) : std::next(it);
    }
}

std::int64_t unix_micros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void utc_month_bounds(std::int64_t unix_seconds, std::int64_t& start, std::int64_t& end) {
    std::int64_t y = 0, m = 0;
    civil_from_days(floor_div(unix_seconds, 86400), y, m);
    start = days_from_civil(y, m, 1) * 86400;
    if (m == 12) {
        ++y;
        m = 1;
    } else {
        ++m;
    }
    end = days_from_civil(y, m, 1) * 86400;
}

}  // namespace ratelimit_proxy::limit
