#include "ratelimit_proxy/limit/memory_store.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
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
//         metered: + holds (id, amount, expiry)   + "h:<id>" = "<amount> <expiry>"
//   cc    leases_[key]: id -> expiry (µs)          zset { id: expiry }
// A bucket past expires_us is what Redis would have dropped: read as absent, holds included
// (a metered window's key outlives every hold in it, so only dead holds go with it).
//
// The sums of holds are taken in another order than Redis's hash order; they are whole
// numbers (amounts are stored %.0f), so the sums agree exactly below 2^53.

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
    double held = 0;    // metered fw: the live holds' sum
    double latest = 0;  // and the latest live hold's expiry
};

// Lua's `a % b` for numbers: a - floor(a / b) * b.
double lua_mod(double a, double b) {
    return a - std::floor(a / b) * b;
}

// A fixed window's bounds at now (µs), as both scripts compute them: a calendar week from
// Monday, a calendar month, one lifetime window (no end), or window_seconds from the epoch.
struct window_bounds {
    double start = 0, end = 0;
    bool has_end = true;
    double seconds = 0;  // what RateLimit-Policy reports as its w
};

window_bounds fixed_window_bounds(const limits& n, double now) {
    window_bounds w;
    switch (n.period) {
        case calendar::month: {
            std::int64_t start = 0, end = 0;
            utc_month_bounds(static_cast<std::int64_t>(std::floor(now / 1000000)), start, end);
            w.start = static_cast<double>(start) * 1000000;
            w.end = static_cast<double>(end) * 1000000;
            w.seconds = static_cast<double>(end - start);
            break;
        }
        case calendar::week: {
            // Day 0 (1970-01-01) was a Thursday.
            const double d = std::floor(std::floor(now / 1000000) / 86400);
            w.start = (d - lua_mod(d + 3, 7)) * 86400 * 1000000;
            w.end = w.start + 7 * 86400 * 1000000.0;
            w.seconds = 7 * 86400;
            break;
        }
        case calendar::lifetime:
            w.has_end = false;
            break;
        case calendar::none: {
            const double ww = n.window_seconds * 1000000;
            w.start = std::floor(now / ww) * ww;
            w.end = w.start + ww;
            w.seconds = n.window_seconds;
            break;
        }
    }
    return w;
}

constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();

// What one item decided, and what it would store if consumed.
struct outcome {
    bool allowed = false;
    bool held_out = false;  // metered fw: refused only because of live holds
    bool present = false;   // the bucket existed (and had not expired)
    double before_remaining = 0, after_remaining = 0;
    double before_reset = 0, after_reset = 0;
    double retry = 0;
    double quota = 0, window_seconds = 0;
    double a = 0, b = 0, c = 0;  // the state to store
    std::int64_t ttl_ms = 0;     // PEXPIRE / PX; -1: PERSIST
    // Metered fw: the hold to add (the cost) and the expiry the key must outlive.
    double hold_amount = 0, hold_expires = 0;
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
    const window_bounds wb = fixed_window_bounds(it.numbers, now);
    double c = s.present ? s.b : 0;
    if (!s.present || s.a != wb.start)
        c = 0;
    outcome o;
    const double reset = wb.has_end ? (wb.end - now) / 1000000 : 0;
    o.after_reset = reset;
    o.before_reset = reset;
    o.quota = limit;
    o.window_seconds = wb.seconds;
    o.a = r0(wb.start);
    if (it.metered) {
        // The cost is held, not counted: settle() charges what was used.
        const double held = s.held;
        o.allowed = c + held + cost <= limit;
        o.held_out = !o.allowed && c + cost <= limit;
        o.before_remaining = std::floor(r6(limit - c - held));
        o.after_remaining =
            o.allowed ? std::floor(r6(limit - c - held - cost)) : o.before_remaining;
        o.retry = o.allowed ? 0 : o.held_out ? 1 : reset;
        o.b = r0(c);
        o.hold_amount = r0(cost);
        o.hold_expires = now + it.hold_seconds * 1000000;
        if (wb.has_end) {
            double last = wb.end;
            if (s.latest > last)
                last = s.latest;
            if (o.hold_expires > last)
                last = o.hold_expires;
            o.ttl_ms = static_cast<std::int64_t>(std::ceil((last - now) / 1000) + 1000);
        } else {
            o.ttl_ms = -1;
        }
        return o;
    }
    o.allowed = c + cost <= limit;
    const double c_after = o.allowed ? c + cost : c;
    o.after_remaining = std::floor(r6(limit - c_after));
    o.before_remaining = std::floor(r6(limit - c));
    // Denied: the window's end, even when cost > limit (it never fits; see the Lua script).
    o.retry = o.allowed ? 0 : reset;
    o.b = r0(c_after);
    o.ttl_ms = wb.has_end ? static_cast<std::int64_t>(std::ceil((wb.end - now) / 1000) + 1000)
                          : -1;
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
        const algorithm algo = it.source ? it.source->algo : algorithm::token_bucket;
        if (auto found = buckets_.find(it.key);
            found != buckets_.end() && now_us <= found->second.expires_us) {
            // Redis drops a key once its time is past, not at it: same test here.
            s.present = true;
            s.a = found->second.a;
            s.b = found->second.b;
            s.c = found->second.c;
            if (it.metered && algo == algorithm::fixed_window) {
                for (const auto& h : found->second.holds) {
                    if (h.expires_us >= now) {
                        s.held += h.amount;
                        if (h.expires_us > s.latest)
                            s.latest = h.expires_us;
                    }
                }
            }
        }
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
        o.present = s.present;
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
            bucket& b = buckets_[it.key];
            if (!o.present)
                b.holds.clear();  // Redis dropped the whole key
            b.a = o.a;
            b.b = o.b;
            b.c = o.c;
            b.expires_us = o.ttl_ms < 0 ? never : now_us + o.ttl_ms * 1000;
            if (it.metered && it.source && it.source->algo == algorithm::fixed_window) {
                // HSET "h:<id>" and HDEL the dead holds, as the script does.
                std::erase_if(b.holds, [now](const hold& h) { return h.expires_us < now; });
                const double expires = r0(o.hold_expires);
                auto same = std::ranges::find(b.holds, it.hold_id, &hold::id);
                if (same != b.holds.end())
                    *same = hold{std::string(it.hold_id), o.hold_amount, expires};
                else
                    b.holds.push_back({std::string(it.hold_id), o.hold_amount, expires});
            }
        }
        policy_result r;
        r.source = it.source;
        r.allowed = o.allowed;
        r.held_out = o.held_out;
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

// One item of lua/settle.lua, in the script's order of operations.
budget_state memory_store::budget_one(const check_item& it, budget_op op, double reserved,
                                      double amount, std::string_view hold_id,
                                      std::int64_t now_us) {
    const double now = static_cast<double>(now_us);
    const algorithm algo = it.source ? it.source->algo : algorithm::token_bucket;
    auto found = buckets_.find(it.key);
    const bool present = found != buckets_.end() && now_us <= found->second.expires_us;
    const bool settling = op == budget_op::settle;
    const limits& n = it.numbers;
    budget_state out;
    switch (algo) {
        case algorithm::fixed_window: {
            const window_bounds wb = fixed_window_bounds(n, now);
            double c = present ? found->second.b : 0;
            double held = 0, latest = 0;
            if (present) {
                for (const auto& h : found->second.holds) {
                    if (h.expires_us < now || (settling && h.id == hold_id))
                        continue;  // dead, or the one being settled
                    held += h.amount;
                    if (h.expires_us > latest)
                        latest = h.expires_us;
                }
            }
            if (!present || found->second.a != wb.start)
                c = 0;
            if (op != budget_op::peek) {
                c = r0(settling ? c + amount : c - amount);
                bucket& b = present ? found->second : (buckets_[it.key] = bucket{});
                b.a = r0(wb.start);
                b.b = c;
                std::erase_if(b.holds, [&](const hold& h) {
                    return h.expires_us < now || (settling && h.id == hold_id);
                });
                if (wb.has_end) {
                    const double last = latest > wb.end ? latest : wb.end;
                    b.expires_us =
                        now_us +
                        static_cast<std::int64_t>(std::ceil((last - now) / 1000) + 1000) * 1000;
                } else {
                    b.expires_us = never;
                }
            }
            out.used = c;
            out.held = held;
            out.reset_seconds = wb.has_end ? (wb.end - now) / 1000000 : 0;
            break;
        }
        case algorithm::token_bucket: {
            const double rate = n.limit / n.window_seconds;
            const double cap = n.burst > 0 ? n.burst : n.limit;
            const double tokens = present ? found->second.a : cap;
            const double ts = present ? found->second.b : now;
            double elapsed = now - ts;
            if (elapsed < 0)
                elapsed = 0;
            double level = std::min(cap, tokens + elapsed * rate / 1000000);
            if (settling && reserved != amount) {
                // What was reserved and not used comes back; below 0 when more was used.
                level = std::min(cap, level + (reserved - amount));
                const double after = r6(level);
                bucket& b = buckets_[it.key];
                if (!present)
                    b.holds.clear();
                b.a = r12(level);
                b.b = r0(now);
                b.expires_us =
                    now_us +
                    static_cast<std::int64_t>(std::ceil((cap - after) / rate * 1000) + 1000) * 1000;
            }
            const double lv = r6(level);
            out.used = cap - lv;
            out.reset_seconds = (cap - lv) / rate;
            break;
        }
        case algorithm::gcra: {
            const double rate = n.limit / n.window_seconds;
            const double cap = n.burst > 0 ? n.burst : n.limit;
            const double t = 1000000 / rate;
            const double tat = present ? found->second.a : now;
            double tat0 = std::max(tat, now);
            if (settling && reserved != amount) {
                double new_tat = tat0 - (reserved - amount) * t;
                if (new_tat < now)
                    new_tat = now;
                tat0 = r6(new_tat);
                bucket& b = buckets_[it.key];
                if (!present)
                    b.holds.clear();
                b.a = tat0;
                b.expires_us =
                    now_us +
                    static_cast<std::int64_t>(std::ceil((tat0 - now) / 1000) + 1000) * 1000;
            }
            const double avail = r6(cap - (tat0 - now) / t);
            out.used = cap - avail;
            out.reset_seconds = (tat0 - now) / 1000000;
            break;
        }
        case algorithm::sliding_window: {
            const double ww = n.window_seconds * 1000000;
            const double cur = std::floor(now / ww) * ww;
            double c = present ? found->second.b : 0, p = present ? found->second.c : 0;
            if (present && found->second.a == cur) {
                if (settling && reserved != amount) {
                    // Only while the reservation's window is the current one.
                    c = c - (reserved - amount);
                    if (c < 0)
                        c = 0;
                    found->second.b = r0(c);
                    found->second.expires_us =
                        now_us + static_cast<std::int64_t>(std::ceil(2 * ww / 1000) + 1000) * 1000;
                }
            } else {
                p = present && found->second.a == cur - ww ? c : 0;
                c = 0;
            }
            const double weight = (ww - (now - cur)) / ww;
            out.used = r6(p * weight + c);
            if (c > 0)
                out.reset_seconds = (cur + 2 * ww - now) / 1000000;
            else if (p > 0)
                out.reset_seconds = (cur + ww - now) / 1000000;
            else
                out.reset_seconds = 0;
            break;
        }
        case algorithm::concurrency:
            return out;  // no budget: the limiters never send these to the script
    }
    // The script replies %.6f strings: round the same way.
    out.used = r6(out.used);
    out.held = r6(out.held);
    out.reset_seconds = r6(out.reset_seconds);
    return out;
}

std::vector<budget_state> memory_store::settle(std::span<const check_item> items,
                                               std::span<const double> actual,
                                               std::string_view hold_id, std::int64_t now_us) {
    forget_expired(now_us);
    std::vector<budget_state> out;
    out.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i)
        out.push_back(budget_one(items[i], budget_op::settle, items[i].cost,
                                 i < actual.size() ? actual[i] : items[i].cost, hold_id, now_us));
    return out;
}

std::vector<budget_state> memory_store::peek(std::span<const check_item> items,
                                             std::int64_t now_us) {
    std::vector<budget_state> out;
    out.reserve(items.size());
    for (const auto& it : items)
        out.push_back(budget_one(it, budget_op::peek, 0, 0, {}, now_us));
    return out;
}

std::optional<std::vector<budget_state>> memory_store::credit(std::span<const check_item> items,
                                                              std::span<const double> amounts,
                                                              std::int64_t now_us) {
    for (const auto& it : items)
        if (!it.source || it.source->algo != algorithm::fixed_window)
            return std::nullopt;  // the script's error reply: nothing written
    forget_expired(now_us);
    std::vector<budget_state> out;
    out.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i)
        out.push_back(budget_one(items[i], budget_op::credit, 0,
                                 i < amounts.size() ? amounts[i] : 0, {}, now_us));
    return out;
}

void memory_store::add_usage(const usage_record& r, std::int64_t retention_s,
                             std::int64_t now_us) {
    const std::int64_t expires = now_us + retention_s * 1'000'000;
    auto& u = usage_[std::string(r.key)];
    if (now_us > u.expires_us)
        u = usage_entry{};  // expired: EXPIRE dropped it
    const std::string m = std::string(r.model) + "|";
    u.fields[m + "requests"] += 1;
    u.fields[m + "input"] += r.input;
    u.fields[m + "cached_input"] += r.cached_input;
    u.fields[m + "cache_write"] += r.cache_write;
    u.fields[m + "output"] += r.output;
    u.fields[m + "nano_usd"] += r.nano_usd;
    u.fields[m + "estimated"] += r.estimated ? 1 : 0;
    u.expires_us = expires;
    if (r.days_key.empty())
        return;
    auto& d = usage_[std::string(r.days_key)];
    if (now_us > d.expires_us)
        d = usage_entry{};
    d.tokens.insert(std::string(r.token_id));
    d.expires_us = expires;
}

std::map<std::string, std::int64_t> memory_store::usage(std::string_view key,
                                                        std::int64_t now_us) const {
    auto found = usage_.find(std::string(key));
    if (found == usage_.end() || now_us > found->second.expires_us)
        return {};
    return found->second.fields;
}

std::set<std::string> memory_store::usage_tokens(std::string_view days_key,
                                                 std::int64_t now_us) const {
    auto found = usage_.find(std::string(days_key));
    if (found == usage_.end() || now_us > found->second.expires_us)
        return {};
    return found->second.tokens;
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
    std::erase_if(usage_, [&](const auto& kv) { return now_us > kv.second.expires_us; });
    // Dead holds count for nothing (Redis drops them when their key is next written): only
    // memory is at stake here.
    const double now = static_cast<double>(now_us);
    for (auto& [key, b] : buckets_)
        if (!b.holds.empty())
            std::erase_if(b.holds, [now](const hold& h) { return h.expires_us < now; });
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
