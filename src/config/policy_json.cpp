#include "ratelimit_proxy/config/policy_json.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <stdexcept>

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
    "must be a positive number of seconds or one of second, minute, hour, day, month";

// A "window" value: seconds, or a unit name. `month` is set for "month" (only when allowed).
double read_window(const json& v, const std::string& field, bool month_allowed, bool& month) {
    month = false;
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
        if (unit == "month") {
            if (!month_allowed)
                throw config_error(field,
                                   "\"month\" (a UTC calendar month) is only valid with algorithm "
                                   "fixed_window; give a number of seconds instead");
            month = true;
            return month_seconds;
        }
        throw config_error(field, window_rule);
    }
    double d = finite_number(v, field, window_rule);
    if (!(d > 0))
        throw config_error(field, window_rule);
    return d;
}

json window_to_json(const limit::limits& l) {
    if (l.period == limit::calendar::month)
        return "month";
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

void check_limits_override(const limit::limits_override& o, const std::string& path) {
    if (o.limit && !(std::isfinite(*o.limit) && *o.limit > 0))
        throw config_error(path + ".limit", "must be a positive number");
    if (o.window_seconds && !(std::isfinite(*o.window_seconds) && *o.window_seconds > 0))
        throw config_error(path + ".window", window_rule);
    if (o.burst && !(std::isfinite(*o.burst) && *o.burst >= 1))
        throw config_error(path + ".burst", "must be at least 1");
}

// Everything about a policy but its name.
void check_policy_body(const limit::policy& p, const std::string& path) {
    const auto& n = p.numbers;
    if (!(std::isfinite(n.limit) && n.limit > 0))
        throw config_error(path + ".limit", "must be a positive number");
    if (!(std::isfinite(n.window_seconds) && n.window_seconds > 0))
        throw config_error(path + ".window", window_rule);
    if (n.period != limit::calendar::none && p.algo != algorithm::fixed_window)
        throw config_error(path + ".window",
                           "\"month\" (a UTC calendar month) is only valid with algorithm "
                           "fixed_window");
    if (!has_burst(p.algo) && n.burst != 0)
        throw config_error(path + ".burst", "is only valid with algorithm token_bucket or gcra");
    if (has_burst(p.algo) && n.burst != 0 && !(std::isfinite(n.burst) && n.burst >= 1))
        throw config_error(path + ".burst", "must be at least 1");
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
        .field("limit",
               [&](const json& v, const std::string& field) {
                   double d = finite_number(v, field, "must be a positive number");
                   if (!(d > 0))
                       throw config_error(field, "must be a positive number");
                   p.numbers.limit = d;
               })
        .field("window",
               [&](const json& v, const std::string& field) {
                   if (p.algo == algorithm::concurrency)
                       throw config_error(field, concurrency_window_rule);
                   bool month = false;
                   p.numbers.window_seconds =
                       read_window(v, field, p.algo == algorithm::fixed_window, month);
                   p.numbers.period = month ? limit::calendar::month : limit::calendar::none;
               })
        .field("burst",
               [&](const json& v, const std::string& field) {
                   if (!has_burst(p.algo))
                       throw config_error(field,
                                          "is only valid with algorithm token_bucket or gcra");
                   double d = finite_number(v, field, "must be a number, at least 1");
                   if (!(d >= 1))
                       throw config_error(field, "must be at least 1");
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
        .section("match",
                 [&](object_reader& m) {
                     m.field("method", [&](const json& v, const std::string& field) {
                          string_into(p.match.method)(v, field);
                          for (auto& c : p.match.method)
                              c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                      }).field("path_prefix", string_into(p.match.path_prefix));
                 })
        .field("cost",
               [&](const json& v, const std::string& field) {
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
              {"limit", number_to_json(p.numbers.limit)},
              {"key", limit::to_string(p.key)},
              {"cost", p.cost},
              {"shadow", p.shadow}};
    if (p.algo != algorithm::concurrency)
        j["window"] = window_to_json(p.numbers);
    if (has_burst(p.algo) && p.numbers.burst > 0)
        j["burst"] = number_to_json(p.numbers.burst);
    if (!p.match.method.empty() || !p.match.path_prefix.empty()) {
        json m = json::object();
        if (!p.match.method.empty())
            m["method"] = p.match.method;
        if (!p.match.path_prefix.empty())
            m["path_prefix"] = p.match.path_prefix;
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

limit::limits_override limits_override_from_json(const json& j, const std::string& path) {
    limit::limits_override o;
    object_reader r(j, path);
    auto optional_number = [](std::optional<double>& out) {
        return [&out](const json& v, const std::string& field) {
            out = finite_number(v, field, "expected a number");
        };
    };
    r.field("limit", optional_number(o.limit))
        .field("window",
               [&](const json& v, const std::string& field) {
                   bool month = false;
                   o.window_seconds = read_window(v, field, false, month);
               })
        .field("burst", optional_number(o.burst));
    r.reject_unknown();
    check_limits_override(o, path);
    return o;
}

limit::token_overrides token_overrides_from_json(const json& j, const std::string& path) {
    if (!j.is_object())
        throw config_error(path, "expected an object: policy name -> {limit, window, burst}");
    limit::token_overrides out;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string field = path + "." + it.key();
        if (!is_valid_name(it.key()))
            throw config_error(field, std::string("policy name ") + name_rule);
        out.emplace(it.key(), limits_override_from_json(it.value(), field));
    }
    return out;
}

json token_overrides_to_json(const limit::token_overrides& o) {
    json j = json::object();
    for (const auto& [name, lo] : o) {
        json e = json::object();
        if (lo.limit)
            e["limit"] = number_to_json(*lo.limit);
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

}  // namespace ratelimit_proxy::config
