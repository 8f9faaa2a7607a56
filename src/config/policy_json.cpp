#include "ratelimit_proxy/config/policy_json.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "json_reader.hpp"
#include "ratelimit_proxy/common/cidr.hpp"
#include "ratelimit_proxy/limit/keys.hpp"

namespace ratelimit_proxy::config {

namespace {

using detail::bool_into;
using detail::finite_number;
using detail::indexed;
using detail::json;
using detail::object_reader;
using detail::positive_number_into;
using detail::string_into;
using detail::string_list_into;
using limit::algorithm;

constexpr double max_cost = 1e6;
// Nominal length of a calendar month, for headers and rates; the store uses real months.
constexpr double month_seconds = 30 * 86400.0;

bool has_burst(algorithm a) {
    return a == algorithm::token_bucket || a == algorithm::gcra;
}

const char* const concurrency_window_rule =
    "is not used by algorithm concurrency (it limits requests in flight; how long a slot "
    "outlives a crashed instance is rate_limit.concurrency_lease_ms)";
const char* const name_rule = "must be 1-64 characters of A-Z a-z 0-9 _ . -";
const char* const window_rule =
    "must be a positive number of seconds or one of second, minute, hour, day, week, month, "
    "lifetime";

constexpr double week_seconds = 7 * 86400.0;
// Nominal, for headers and rates: a lifetime window never resets.
constexpr double lifetime_seconds = 100 * 365 * 86400.0;

std::string calendar_rule(limit::calendar c) {
    switch (c) {
        case limit::calendar::week:
            return "\"week\" (from Monday 00:00 UTC) is only valid with algorithm fixed_window";
        case limit::calendar::month:
            return "\"month\" (a UTC calendar month) is only valid with algorithm fixed_window";
        case limit::calendar::lifetime:
            return "\"lifetime\" (a total that never resets) is only valid with algorithm "
                   "fixed_window";
        case limit::calendar::none:
            break;
    }
    return "";
}

// A "window" value: seconds, or a unit name. `period` is set for the calendar ones ("week",
// "month", "lifetime"), which only fixed windows may have (`calendar_allowed`).
double read_window(const json& v, const std::string& field, bool calendar_allowed,
                   limit::calendar& period) {
    period = limit::calendar::none;
    if (v.is_string()) {
        const auto& unit = v.get_ref<const std::string&>();
        if (unit == "second")
            return 1;
        if (unit == "minute")
            return 60;
        if (unit == "hour")
            return 3600;
        if (unit == "day")
            return 86400;
        double seconds = 0;
        if (unit == "week") {
            period = limit::calendar::week;
            seconds = week_seconds;
        } else if (unit == "month") {
            period = limit::calendar::month;
            seconds = month_seconds;
        } else if (unit == "lifetime") {
            period = limit::calendar::lifetime;
            seconds = lifetime_seconds;
        } else {
            throw config_error(field, window_rule);
        }
        if (!calendar_allowed)
            throw config_error(field, calendar_rule(period) + "; give a number of seconds instead");
        return seconds;
    }
    double d = finite_number(v, field, window_rule);
    if (!(d > 0))
        throw config_error(field, window_rule);
    return d;
}

json window_to_json(const limit::limits& l) {
    switch (l.period) {
        case limit::calendar::week:
            return "week";
        case limit::calendar::month:
            return "month";
        case limit::calendar::lifetime:
            return "lifetime";
        case limit::calendar::none:
            break;
    }
    return l.window_seconds;
}

// JSON numbers that are whole print as integers ("limit": 1000, not 1000.0).
json number_to_json(double d) {
    if (std::floor(d) == d && std::fabs(d) < 9e15)
        return static_cast<long long>(d);
    return d;
}

auto name_into(std::string& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_string() || !is_valid_name(v.get_ref<const std::string&>()))
            throw config_error(field, name_rule);
        out = v.get<std::string>();
    };
}

bool is_method_token(std::string_view m) {
    return !m.empty() && m.size() <= 32 &&
           m.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ-_") == std::string_view::npos;
}

bool has_control_or_space(std::string_view s) {
    for (unsigned char c : s)
        if (c <= 0x20 || c == 0x7F)
            return true;
    return false;
}

// A JSON number times 10^decimals, exactly, from its shortest decimal form (nlohmann prints
// the shortest text that reads back as the same double, so 0.1 is "0.1", not
// 0.1000000000000000055...). nullopt when not a number, negative, with more than `decimals`
// decimals, or above `max`.
std::optional<std::int64_t> scaled_decimal(const json& v, int decimals, std::int64_t max) {
    if (!v.is_number())
        return std::nullopt;
    std::string text = v.dump();
    std::size_t i = 0;
    if (i < text.size() && text[i] == '-')
        return std::nullopt;
    std::string digits;
    long exponent = 0;  // of the last digit in `digits`
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])))
        digits += text[i++];
    if (i < text.size() && text[i] == '.') {
        ++i;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
            digits += text[i++];
            --exponent;
        }
    }
    if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
        ++i;
        bool negative = false;
        if (i < text.size() && (text[i] == '+' || text[i] == '-'))
            negative = text[i++] == '-';
        long e = 0;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && e < 10000)
            e = e * 10 + (text[i++] - '0');
        exponent += negative ? -e : e;
    }
    if (i != text.size() || digits.empty())
        return std::nullopt;
    exponent += decimals;
    // Trailing zeros below the unit are no decimals ("1.50" has two digits but one decimal).
    while (exponent < 0 && !digits.empty() && digits.back() == '0') {
        digits.pop_back();
        ++exponent;
    }
    if (exponent < 0 && !digits.empty())
        return std::nullopt;  // more decimals than allowed
    const auto first = digits.find_first_not_of('0');
    if (first == std::string::npos)
        return 0;
    digits.erase(0, first);
    if (static_cast<long>(digits.size()) + exponent > 18)
        return std::nullopt;
    digits.append(static_cast<std::size_t>(exponent), '0');
    const std::int64_t value = std::stoll(digits);
    if (value > max)
        return std::nullopt;
    return value;
}

constexpr std::int64_t max_nano_usd =
    static_cast<std::int64_t>(max_usd) * metering::nano_usd_per_usd;
// Above this a whole number of tokens is no longer exact in a double.
constexpr double max_tokens = 1e15;
// Micro-USD per million tokens: USD 1000000 per million tokens at most.
constexpr std::int64_t max_micro_price = 1'000'000'000'000;

const char* const usd_rule =
    "must be a positive amount of USD with at most 9 decimals (at most 9000000)";
const char* const tokens_rule = "must be a positive whole number of tokens";
const char* const model_rule =
    "must be a model name of 1-128 characters without control characters, or a prefix "
    "ending in '*' (\"gpt-4o*\")";

bool is_whole_tokens(double d) {
    return std::isfinite(d) && d >= 1 && d <= max_tokens && std::floor(d) == d;
}

bool is_whole_nano_usd(double d) {
    return std::isfinite(d) && d >= 1 && d <= static_cast<double>(max_nano_usd) &&
           std::floor(d) == d;
}

// The "limit" of a policy or an override, in the unit the meter keeps it in.
double read_limit(const json& v, const std::string& field, limit::meter m) {
    switch (m) {
        case limit::meter::usd: {
            auto nano = scaled_decimal(v, 9, max_nano_usd);
            if (!nano || *nano == 0)
                throw config_error(field, usd_rule);
            return static_cast<double>(*nano);
        }
        case limit::meter::tokens: {
            double d = finite_number(v, field, tokens_rule);
            if (!is_whole_tokens(d))
                throw config_error(field, tokens_rule);
            return d;
        }
        case limit::meter::requests:
            break;
    }
    double d = finite_number(v, field, "must be a positive number");
    if (!(d > 0))
        throw config_error(field, "must be a positive number");
    return d;
}

json limit_to_json(double limit, limit::meter m) {
    return m == limit::meter::usd ? usd_json_from_nano(limit) : number_to_json(limit);
}

void check_metered_numbers(double limit, const std::optional<double>& burst, limit::meter m,
                           const std::string& path) {
    if (m == limit::meter::usd && !is_whole_nano_usd(limit))
        throw config_error(path + ".limit", usd_rule);
    if (m == limit::meter::tokens) {
        if (!is_whole_tokens(limit))
            throw config_error(path + ".limit", tokens_rule);
        if (burst && *burst != 0 && !is_whole_tokens(*burst))
            throw config_error(path + ".burst", tokens_rule);
    }
}

void check_limits_override(const limit::limits_override& o, const std::string& path,
                           limit::meter m) {
    if (o.limit && !(std::isfinite(*o.limit) && *o.limit > 0))
        throw config_error(path + ".limit", "must be a positive number");
    if (o.window_seconds && !(std::isfinite(*o.window_seconds) && *o.window_seconds > 0))
        throw config_error(path + ".window", window_rule);
    if (o.burst && !(std::isfinite(*o.burst) && *o.burst >= 1))
        throw config_error(path + ".burst", "must be at least 1");
    if (o.limit)
        check_metered_numbers(*o.limit, o.burst, m, path);
    else if (m == limit::meter::tokens && o.burst && !is_whole_tokens(*o.burst))
        throw config_error(path + ".burst", tokens_rule);
}

// Everything about a policy but its name.
void check_policy_body(const limit::policy& p, const std::string& path) {
    const auto& n = p.numbers;
    if (!(std::isfinite(n.limit) && n.limit > 0))
        throw config_error(path + ".limit", "must be a positive number");
    if (!(std::isfinite(n.window_seconds) && n.window_seconds > 0))
        throw config_error(path + ".window", window_rule);
    if (n.period != limit::calendar::none && p.algo != algorithm::fixed_window)
        throw config_error(path + ".window", calendar_rule(n.period));
    if (!has_burst(p.algo) && n.burst != 0)
        throw config_error(path + ".burst", "is only valid with algorithm token_bucket or gcra");
    if (has_burst(p.algo) && n.burst != 0 && !(std::isfinite(n.burst) && n.burst >= 1))
        throw config_error(path + ".burst", "must be at least 1");
    if (p.metered()) {
        if (p.algo == algorithm::concurrency)
            throw config_error(path + ".meter",
                               "must be requests with algorithm concurrency (it counts requests "
                               "in flight, not what they use)");
        if (p.what == limit::meter::usd && p.algo != algorithm::fixed_window)
            throw config_error(path + ".meter",
                               "usd needs algorithm fixed_window (a budget per day, week, month, "
                               "lifetime or number of seconds), not " +
                                   std::string(limit::to_string(p.algo)));
        if (p.cost != 1)
            throw config_error(path + ".cost", "is not valid with meter " +
                                                   std::string(limit::to_string(p.what)) +
                                                   ": a request takes what it uses");
        check_metered_numbers(n.limit, n.burst, p.what, path);
    }
    if (p.what != limit::meter::tokens && p.counts != limit::token_count::total)
        throw config_error(path + ".count", "is only valid with meter tokens");
    if (p.cost < 1 || p.cost > max_cost)
        throw config_error(path + ".cost", "must be an integer from 1 to 1000000");
    if (p.algo == algorithm::concurrency && p.cost != 1)
        throw config_error(path + ".cost",
                           "must be 1 with algorithm concurrency (a request holds one slot)");
    // A request costing more than the bucket can ever hold would be refused forever.
    const double capacity = has_burst(p.algo) ? n.capacity() : n.limit;
    if (p.cost > capacity)
        throw config_error(path + ".cost", "is more than the policy's capacity (" +
                                               json(number_to_json(capacity)).dump() +
                                               "), so no request could ever pass");
    if (!p.match.method.empty() && !is_method_token(p.match.method))
        throw config_error(path + ".match.method",
                           "must be an HTTP method such as POST, got \"" + p.match.method + "\"");
    const auto& prefix = p.match.path_prefix;
    if (!prefix.empty() && (prefix.front() != '/' || has_control_or_space(prefix) ||
                            prefix.find_first_of("?#") != std::string::npos))
        throw config_error(path + ".match.path_prefix",
                           "must start with / and contain no spaces, ? or #");
    if (!p.match.model.empty() && !is_valid_model_pattern(p.match.model))
        throw config_error(path + ".match.model", model_rule);
}

}  // namespace

bool is_valid_name(std::string_view name) {
    if (name.empty() || name.size() > 64)
        return false;
    for (unsigned char c : name)
        if (!(std::isalnum(c) || c == '_' || c == '.' || c == '-'))
            return false;
    return true;
}

void validate_policy(const limit::policy& p, const std::string& path) {
    if (!is_valid_name(p.name))
        throw config_error(path + ".name", name_rule);
    check_policy_body(p, path);
}

void validate_access_list(const limit::access_list& a, const std::string& path) {
    for (std::size_t i = 0; i < a.token_ids.size(); ++i)
        if (!limit::is_token_id(a.token_ids[i]))
            throw config_error(indexed(path + ".tokens", i),
                               "must be a token id: 16 lowercase hex characters");
    common::cidr_set probe;
    for (std::size_t i = 0; i < a.cidrs.size(); ++i) {
        try {
            probe.add(a.cidrs[i]);
        } catch (const std::invalid_argument& e) {
            throw config_error(indexed(path + ".cidrs", i), e.what());
        }
    }
}

void validate_registration(const limit::registration_control& r, const std::string& path) {
    if (r.mode == limit::registration_mode::secret && r.secret.empty())
        throw config_error(path + ".secret", "is required when registration mode is \"secret\"");
    for (char c : r.secret)
        if (c == '\r' || c == '\n' || c == '\0')
            throw config_error(path + ".secret", "contains a line break or NUL");
    if (!(std::isfinite(r.per_ip_per_minute) && r.per_ip_per_minute > 0))
        throw config_error(path + ".per_ip_per_minute", "must be a positive number");
}

void validate_override(const limit::emergency_override& o, const std::string& path) {
    if (!(std::isfinite(o.factor) && o.factor > 0 && o.factor <= 1))
        throw config_error(path + ".factor", "must be greater than 0 and at most 1");
}

limit::policy policy_from_json(const json& j, const std::string& path) {
    limit::policy p;
    p.name.clear();  // the caller's to set when the object leaves it out
    object_reader r(j, path);
    // The algorithm first: what "window" and "burst" may be depends on it.
    r.field("name", name_into(p.name))
        .field("algorithm",
               [&](const json& v, const std::string& field) {
                   auto a = v.is_string() ? limit::algorithm_from(v.get_ref<const std::string&>())
                                          : std::nullopt;
                   if (!a)
                       throw config_error(field,
                                          "expected one of token_bucket, gcra, "
                                          "sliding_window, fixed_window, concurrency");
                   p.algo = *a;
               })
        // The meter before the numbers: it decides their unit.
        .field("meter",
               [&](const json& v, const std::string& field) {
                   auto m = v.is_string() ? limit::meter_from(v.get_ref<const std::string&>())
                                          : std::nullopt;
                   if (!m)
                       throw config_error(field, "expected one of requests, tokens, usd");
                   p.what = *m;
               })
        .field("count",
               [&](const json& v, const std::string& field) {
                   if (p.what != limit::meter::tokens)
                       throw config_error(field, "is only valid with meter tokens");
                   auto c = v.is_string() ? limit::token_count_from(v.get_ref<const std::string&>())
                                          : std::nullopt;
                   if (!c)
                       throw config_error(field, "expected one of total, input, output");
                   p.counts = *c;
               })
        .field("limit",
               [&](const json& v, const std::string& field) {
                   p.numbers.limit = read_limit(v, field, p.what);
               })
        .field("window",
               [&](const json& v, const std::string& field) {
                   if (p.algo == algorithm::concurrency)
                       throw config_error(field, concurrency_window_rule);
                   p.numbers.window_seconds =
                       read_window(v, field, p.algo == algorithm::fixed_window, p.numbers.period);
               })
        .field("burst",
               [&](const json& v, const std::string& field) {
                   if (!has_burst(p.algo))
                       throw config_error(field,
                                          "is only valid with algorithm token_bucket or gcra");
                   double d = finite_number(v, field, "must be a number, at least 1");
                   if (!(d >= 1))
                       throw config_error(field, "must be at least 1");
                   if (p.what == limit::meter::tokens && !is_whole_tokens(d))
                       throw config_error(field, tokens_rule);
                   p.numbers.burst = d;
               })
        .field("key",
               [&](const json& v, const std::string& field) {
                   auto k = v.is_string() ? limit::key_kind_from(v.get_ref<const std::string&>())
                                          : std::nullopt;
                   if (!k)
                       throw config_error(field, "expected one of global, ip, token, token_route");
                   p.key = *k;
               })
        .section(
            "match",
            [&](object_reader& m) {
                m.field("method",
                        [&](const json& v, const std::string& field) {
                            string_into(p.match.method)(v, field);
                            for (auto& c : p.match.method)
                                c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                        })
                    .field("path_prefix", string_into(p.match.path_prefix))
                    .field("model", [&](const json& v, const std::string& field) {
                        string_into(p.match.model)(v, field);
                        if (!is_valid_model_pattern(p.match.model))
                            throw config_error(field, model_rule);
                    });
            })
        .field("cost",
               [&](const json& v, const std::string& field) {
                   if (p.metered())
                       throw config_error(field, "is not valid with meter " +
                                                     std::string(limit::to_string(p.what)) +
                                                     ": a request takes what it uses");
                   if (!v.is_number_integer() || v.get<long long>() < 1 ||
                       v.get<long long>() > static_cast<long long>(max_cost))
                       throw config_error(field, "must be an integer from 1 to 1000000");
                   p.cost = static_cast<std::uint32_t>(v.get<long long>());
               })
        .field("shadow", bool_into(p.shadow))
        .field("fail_closed", [&](const json& v, const std::string& field) {
            bool b = false;
            bool_into(b)(v, field);
            p.fail_closed = b;
        });
    r.reject_unknown();
    // After the reads, so that a wrong value is reported before a missing neighbour.
    if (!r.has("limit"))
        throw config_error(r.qualified("limit"), "is required");
    if (p.algo != algorithm::concurrency && !r.has("window"))
        throw config_error(r.qualified("window"), "is required");
    check_policy_body(p, path);
    return p;
}

json policy_to_json(const limit::policy& p) {
    json j = {{"name", p.name},
              {"algorithm", limit::to_string(p.algo)},
              {"meter", limit::to_string(p.what)},
              {"limit", limit_to_json(p.numbers.limit, p.what)},
              {"key", limit::to_string(p.key)},
              {"shadow", p.shadow}};
    if (!p.metered())
        j["cost"] = p.cost;
    if (p.what == limit::meter::tokens)
        j["count"] = limit::to_string(p.counts);
    if (p.algo != algorithm::concurrency)
        j["window"] = window_to_json(p.numbers);
    if (has_burst(p.algo) && p.numbers.burst > 0)
        j["burst"] = number_to_json(p.numbers.burst);
    if (!p.match.method.empty() || !p.match.path_prefix.empty() || !p.match.model.empty()) {
        json m = json::object();
        if (!p.match.method.empty())
            m["method"] = p.match.method;
        if (!p.match.path_prefix.empty())
            m["path_prefix"] = p.match.path_prefix;
        if (!p.match.model.empty())
            m["model"] = p.match.model;
        j["match"] = std::move(m);
    }
    if (p.fail_closed)
        j["fail_closed"] = *p.fail_closed;
    return j;
}

limit::tier tier_from_json(const std::string& name, const json& j, const std::string& path) {
    if (!is_valid_name(name))
        throw config_error(path, std::string("tier name ") + name_rule);
    limit::tier t;
    t.name = name;
    object_reader r(j, path);
    if (!r.has("policies"))
        throw config_error(r.qualified("policies"), "is required (a list of policy names)");
    r.field("policies", [&](const json& v, const std::string& field) {
        string_list_into(t.policies)(v, field);
        for (std::size_t i = 0; i < t.policies.size(); ++i)
            if (!is_valid_name(t.policies[i]))
                throw config_error(indexed(field, i), name_rule);
    });
    r.reject_unknown();
    return t;
}

json tier_to_json(const limit::tier& t) {
    return {{"policies", t.policies}};
}

limit::access_list access_list_from_json(const json& j, const std::string& path) {
    limit::access_list a;
    object_reader r(j, path);
    r.field("tokens", string_list_into(a.token_ids)).field("cidrs", string_list_into(a.cidrs));
    r.reject_unknown();
    validate_access_list(a, path);
    return a;
}

json access_list_to_json(const limit::access_list& a) {
    return {{"tokens", a.token_ids}, {"cidrs", a.cidrs}};
}

limit::limits_override limits_override_from_json(const json& j, const std::string& path,
                                                 limit::meter m) {
    limit::limits_override o;
    object_reader r(j, path);
    r.field("limit",
            [&](const json& v, const std::string& field) { o.limit = read_limit(v, field, m); })
        .field("window",
               [&](const json& v, const std::string& field) {
                   limit::calendar period = limit::calendar::none;
                   o.window_seconds = read_window(v, field, false, period);
               })
        .field("burst", [&](const json& v, const std::string& field) {
            o.burst = finite_number(v, field, "expected a number");
        });
    r.reject_unknown();
    check_limits_override(o, path, m);
    return o;
}

namespace {
limit::meter meter_of(const limit::rule_set* rules, std::string_view policy) {
    const limit::policy* p = rules ? rules->find_policy(policy) : nullptr;
    return p ? p->what : limit::meter::requests;
}
}  // namespace

limit::token_overrides token_overrides_from_json(const json& j, const std::string& path,
                                                 const limit::rule_set* rules) {
    if (!j.is_object())
        throw config_error(path, "expected an object: policy name -> {limit, window, burst}");
    limit::token_overrides out;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string field = path + "." + it.key();
        if (!is_valid_name(it.key()))
            throw config_error(field, std::string("policy name ") + name_rule);
        out.emplace(it.key(),
                    limits_override_from_json(it.value(), field, meter_of(rules, it.key())));
    }
    return out;
}

json token_overrides_to_json(const limit::token_overrides& o, const limit::rule_set* rules) {
    json j = json::object();
    for (const auto& [name, lo] : o) {
        json e = json::object();
        if (lo.limit)
            e["limit"] = limit_to_json(*lo.limit, meter_of(rules, name));
        if (lo.window_seconds)
            e["window"] = number_to_json(*lo.window_seconds);
        if (lo.burst)
            e["burst"] = number_to_json(*lo.burst);
        j[name] = std::move(e);
    }
    return j;
}

limit::emergency_override override_from_json(const json& j, const std::string& path) {
    limit::emergency_override o;
    object_reader r(j, path);
    r.field("factor", [&](const json& v, const std::string& field) {
         o.factor = finite_number(v, field, "must be greater than 0 and at most 1");
     }).field("block_all", bool_into(o.block_all));
    r.reject_unknown();
    validate_override(o, path);
    return o;
}

json override_to_json(const limit::emergency_override& o) {
    return {{"factor", number_to_json(o.factor)}, {"block_all", o.block_all}};
}

limit::registration_control registration_from_json(const json& j, const std::string& path) {
    limit::registration_control rc;
    object_reader r(j, path);
    r.field("mode",
            [&](const json& v, const std::string& field) {
                auto m = v.is_string()
                             ? limit::registration_mode_from(v.get_ref<const std::string&>())
                             : std::nullopt;
                if (!m)
                    throw config_error(field, "expected one of open, secret, closed");
                rc.mode = *m;
            })
        .field("secret", string_into(rc.secret))
        .field("per_ip_per_minute", positive_number_into(rc.per_ip_per_minute));
    r.reject_unknown();
    // "secret" without a secret is checked where the whole is known (the environment may
    // supply REGISTRATION_SECRET): build_rule_set, validate_registration.
    return rc;
}

json registration_to_json(const limit::registration_control& r) {
    return {{"mode", limit::to_string(r.mode)},
            {"per_ip_per_minute", number_to_json(r.per_ip_per_minute)}};
}

bool is_valid_model_pattern(std::string_view model) {
    if (model.empty() || model.size() > 128)
        return false;
    for (std::size_t i = 0; i < model.size(); ++i) {
        const auto c = static_cast<unsigned char>(model[i]);
        if (c < 0x20 || c == 0x7F)
            return false;
        if (c == '*' && i + 1 != model.size())
            return false;
    }
    return true;
}

std::optional<std::int64_t> nano_usd_from_json(const json& v) {
    return scaled_decimal(v, 9, max_nano_usd);
}

json usd_json_from_nano(double nano_usd) {
    // Correctly rounded: the double nearest the decimal, as reading "1.5" gives.
    return number_to_json(nano_usd / static_cast<double>(metering::nano_usd_per_usd));
}

void validate_price(const metering::price& p, const std::string& path) {
    const std::pair<const char*, std::int64_t> parts[] = {{"input", p.input},
                                                          {"cached_input", p.cached_input},
                                                          {"cache_write", p.cache_write},
                                                          {"output", p.output}};
    for (const auto& [name, value] : parts)
        if (value < 0 || value > max_micro_price)
            throw config_error(path + "." + name,
                               "must be from 0 to 1000000 (USD per million tokens)");
}

void validate_pricing(const metering::price_table& t, const std::string& path) {
    for (const auto& [model, price] : t.entries()) {
        const std::string field = path + "." + model;
        if (!is_valid_model_pattern(model))
            throw config_error(field, model_rule);
        validate_price(price, field);
    }
}

metering::price price_from_json(const json& j, const std::string& path) {
    metering::price p;
    object_reader r(j, path);
    auto usd_per_million = [](std::int64_t& out) {
        return [&out](const json& v, const std::string& field) {
            const char* const rule =
                "must be USD per million tokens: a number from 0 to 1000000 with at most 6 "
                "decimals";
            if (!v.is_number())
                throw config_error(field, rule);
            auto micro = metering::micro_usd_from(v.get<double>());
            if (!micro)
                throw config_error(field, rule);
            out = *micro;
        };
    };
    r.field("input", usd_per_million(p.input))
        .field("cached_input", usd_per_million(p.cached_input))
        .field("cache_write", usd_per_million(p.cache_write))
        .field("output", usd_per_million(p.output));
    r.reject_unknown();
    for (const char* required : {"input", "output"})
        if (!r.has(required))
            throw config_error(r.qualified(required), "is required (USD per million tokens)");
    // Without their own price, cached and cache-write tokens cost what input tokens do.
    if (!r.has("cached_input"))
        p.cached_input = p.input;
    if (!r.has("cache_write"))
        p.cache_write = p.input;
    validate_price(p, path);
    return p;
}

json price_to_json(const metering::price& p) {
    auto usd = [](std::int64_t micro) { return number_to_json(metering::usd_from_micro(micro)); };
    return {{"input", usd(p.input)},
            {"cached_input", usd(p.cached_input)},
            {"cache_write", usd(p.cache_write)},
            {"output", usd(p.output)}};
}

metering::price_table pricing_from_json(const json& j, const std::string& path) {
    if (!j.is_object())
        throw config_error(path, "expected an object: model (or prefix*) -> {input, output, ...}");
    metering::price_table t;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string field = path + "." + it.key();
        if (!is_valid_model_pattern(it.key()))
            throw config_error(field, model_rule);
        t.set(it.key(), price_from_json(it.value(), field));
    }
    return t;
}

json pricing_to_json(const metering::price_table& t) {
    json j = json::object();
    for (const auto& [model, price] : t.entries())
        j[model] = price_to_json(price);
    return j;
}

}  // namespace ratelimit_proxy::config
