#include "ratelimit_proxy/config/settings_table.hpp"

#include <boost/url/parse.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "json_reader.hpp"
#include "ratelimit_proxy/common/cidr.hpp"
#include "ratelimit_proxy/common/http_text.hpp"
#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/host_port.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"

namespace ratelimit_proxy::config {

namespace {

using detail::bool_into;
using detail::finite_number;
using detail::indexed;
using detail::json;
using detail::millis_into;
using detail::positive_number_into;
using detail::string_into;
using detail::string_list_into;
using detail::unsigned_into;
using check_fn = decltype(setting::check);

// --- Values read from JSON, by the type of the member they go into.

void from_json(std::string& out, const json& v, const std::string& field) {
    string_into(out)(v, field);
}
void from_json(bool& out, const json& v, const std::string& field) {
    bool_into(out)(v, field);
}
void from_json(milliseconds& out, const json& v, const std::string& field) {
    millis_into(out)(v, field);
}
void from_json(double& out, const json& v, const std::string& field) {
    positive_number_into(out)(v, field);
}
void from_json(std::vector<std::string>& out, const json& v, const std::string& field) {
    string_list_into(out)(v, field);
}
template <class T>
requires std::is_unsigned_v<T>
void from_json(T& out, const json& v, const std::string& field) {
    unsigned_into(out)(v, field);
}
void from_json(std::int64_t& out, const json& v, const std::string& field) {
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)))
        throw config_error(field, "expected an integer");
    out = v.get<std::int64_t>();
}

// --- Values read from an environment variable's text, likewise.

double parse_positive_number(const std::string& field, const std::string& text) {
    errno = 0;
    char* end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !std::isfinite(value) ||
        value <= 0)
        throw config_error(field, "expected a positive number, got \"" + text + "\"");
    return value;
}

unsigned parse_unsigned(const std::string& field, const std::string& text) {
    if (text.empty() || text.size() > 6 ||
        text.find_first_not_of("0123456789") != std::string::npos)
        throw config_error(field, "expected a whole number, got \"" + text + "\"");
    return static_cast<unsigned>(std::stoul(text));
}

// "a, b,,c" -> {"a", "b", "c"}
std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        const auto trimmed = common::trim_ows(item);
        if (!trimmed.empty())
            out.emplace_back(trimmed);
    }
    return out;
}

void from_text(std::string& out, const std::string& text, const std::string&) {
    out = text;
}
void from_text(bool& out, const std::string& text, const std::string& variable) {
    if (text == "1" || text == "true" || text == "yes" || text == "on")
        out = true;
    else if (text == "0" || text == "false" || text == "no" || text == "off")
        out = false;
    else
        throw config_error(variable, "expected true or false, got \"" + text + "\"");
}
void from_text(milliseconds& out, const std::string& text, const std::string& variable) {
    out = milliseconds(parse_unsigned(variable, text));
}
void from_text(unsigned& out, const std::string& text, const std::string& variable) {
    out = parse_unsigned(variable, text);
}
void from_text(double& out, const std::string& text, const std::string& variable) {
    out = parse_positive_number(variable, text);
}
void from_text(std::vector<std::string>& out, const std::string& text, const std::string&) {
    out = split_list(text);
}

// --- Rows.

template <class T>
auto at(T settings::*member) {
    return [member](settings& s) -> T& { return s.*member; };
}
template <class Section, class T>
auto at(Section settings::*section, T Section::*member) {
    return [section, member](settings& s) -> T& { return (s.*section).*member; };
}

// A setting of the file only, read by the type of its member.
template <class Get>
setting value(std::string_view path, Get get, check_fn check = {}) {
    return {.path = path,
            .read_json = [get](const json& v, const std::string& field,
                               settings& s) { from_json(get(s), v, field); },
            .check = std::move(check)};
}

// A setting of the file and the environment, read by the type of its member.
template <class Get>
setting value(std::string_view path, std::string_view variable, std::string_view help, Get get,
              check_fn check = {}) {
    setting row = value(path, get, std::move(check));
    row.variable = variable;
    row.help = help;
    row.read_variable = [get](const std::string& text, const std::string& name, settings& s) {
        from_text(get(s), text, name);
    };
    return row;
}

// --- Checks.

void validate_url(const std::string& field, const std::string& url) {
    if (url.empty())
        throw config_error(field, "is required (the upstream API's base URL)");
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed)
        throw config_error(field, "is not a valid URL: \"" + url + "\"");
    auto scheme = parsed->scheme();
    if (scheme != "http" && scheme != "https")
        throw config_error(field, "must start with http:// or https://, got \"" + url + "\"");
    if (!parsed->has_authority() || parsed->encoded_host().empty())
        throw config_error(field, "has no host: \"" + url + "\"");
    if (parsed->has_port() && (parsed->port_number() == 0))
        throw config_error(field, "has an invalid port: \"" + url + "\"");
    if (parsed->has_fragment())
        throw config_error(field, "must not contain a #fragment");
    if (parsed->has_userinfo())
        throw config_error(field, "must not contain credentials; use TARGET_API_KEY");
}

bool is_valid_header_name(const std::string& name) {
    if (name.empty())
        return false;
    for (unsigned char c : name) {
        if (!(std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                     std::string_view::npos))
            return false;
    }
    return true;
}

void validate_key_header(const std::string& label, const std::string& name) {
    if (!is_valid_header_name(name))
        throw config_error(label, "is not a valid header name: \"" + name + "\"");
    // The proxy writes these itself (framing, Host, forwarding) or drops them (hop-by-hop):
    // a key sent in one would be lost or sent twice.
    static constexpr std::string_view managed_headers[] = {"Host",
                                                           "Content-Length",
                                                           "Transfer-Encoding",
                                                           "Connection",
                                                           "Keep-Alive",
                                                           "Proxy-Connection",
                                                           "TE",
                                                           "Trailer",
                                                           "Upgrade",
                                                           "Proxy-Authorization",
                                                           "Proxy-Authenticate",
                                                           "Expect",
                                                           "X-Forwarded-For",
                                                           "X-Forwarded-Proto"};
    for (auto managed : managed_headers) {
        if (common::ascii_iequals(name, managed))
            throw config_error(label,
                               "names " + std::string(managed) +
                                   ", which the proxy sets or removes itself; use the header "
                                   "the API reads its key from (e.g. Authorization or x-api-key)");
    }
}

host_port checked_host_port(const std::string& label, const std::string& address) {
    try {
        return parse_host_port(address);
    } catch (const std::invalid_argument& e) {
        throw config_error(label, e.what());
    }
}

void validate_admin_token(const settings& s, const std::string& label) {
    if (s.admin.token.empty())
        return;
    // It guards changing every limit: nothing guessable.
    if (s.admin.token.size() < 16)
        throw config_error(label, "must be at least 16 characters");
    for (unsigned char c : s.admin.token)
        if (c <= 0x20 || c == 0x7F)
            throw config_error(label, "must not contain spaces or control characters");
    if (s.admin.bind_address == s.server.bind_address)
        throw config_error(label_of("admin.bind_address"),
                           "must differ from " + label_of("server.bind_address"));
}

// A JSON value in (0, 1] or (0, 1): read as any number, its range checked with the rest.
auto fraction(double load_aware_settings::*member) {
    return [member](const json& v, const std::string& field, settings& s) {
        s.load_aware.*member = finite_number(v, field, "expected a number between 0 and 1");
    };
}

// --- The table.

std::vector<setting> make_table() {
    return {
        value("upstream.url", "TARGET_API_URL", "upstream base URL, http:// or https:// (required)",
              at(&settings::upstream, &upstream_settings::url),
              [](settings& s, const std::string& label) { validate_url(label, s.upstream.url); }),
        value("upstream.api_key", "TARGET_API_KEY",
              "key injected into every upstream request (optional)",
              at(&settings::upstream, &upstream_settings::api_key),
              [](settings& s, const std::string& label) {
                  for (char c : s.upstream.api_key)
                      if (c == '\r' || c == '\n' || c == '\0')
                          throw config_error(label, "contains a line break or NUL");
              }),
        value("upstream.api_key_header", "TARGET_API_KEY_HEADER",
              "header carrying the key (default Authorization)",
              at(&settings::upstream, &upstream_settings::api_key_header),
              [](settings& s, const std::string& label) {
                  validate_key_header(label, s.upstream.api_key_header);
              }),
        value("upstream.api_key_format", "TARGET_API_KEY_FORMAT",
              "its value, {key} replaced (default \"Bearer {key}\")",
              at(&settings::upstream, &upstream_settings::api_key_format),
              [](settings& s, const std::string& label) {
                  if (!s.upstream.api_key.empty() &&
                      s.upstream.api_key_format.find("{key}") == std::string::npos)
                      throw config_error(label, "must contain {key}");
              }),
        value("upstream.ca_file", "TARGET_CA_FILE",
              "extra CA certificates (PEM) to verify the upstream with",
              at(&settings::upstream, &upstream_settings::ca_file),
              [](settings& s, const std::string& label) {
                  if (s.upstream.ca_file.empty())
                      return;
                  std::ifstream probe(s.upstream.ca_file);
                  if (!probe)
                      throw config_error(label, "cannot read \"" + s.upstream.ca_file + "\"");
              }),
        value("upstream.verify_tls", at(&settings::upstream, &upstream_settings::verify_tls)),
        value("upstream.connect_timeout_ms",
              at(&settings::upstream, &upstream_settings::connect_timeout)),
        value("upstream.response_timeout_ms",
              at(&settings::upstream, &upstream_settings::response_timeout)),
        value("upstream.idle_timeout_ms",
              at(&settings::upstream, &upstream_settings::idle_timeout)),
        value("upstream.max_idle_connections",
              at(&settings::upstream, &upstream_settings::max_idle_connections)),
        value("upstream.pool_idle_timeout_ms",
              at(&settings::upstream, &upstream_settings::pool_idle_timeout)),

        value("rate_limit.requests_per_minute", "RATE_LIMIT",
              "requests per minute per token (default 60), when the config file\n"
              "has no \"policies\"",
              at(&settings::rate_limit, &rate_limit_settings::requests_per_minute),
              [](settings& s, const std::string& label) {
                  if (!(s.rate_limit.requests_per_minute > 0))
                      throw config_error(label, "must be a positive number");
              }),
        [] {
            setting row =
                value("rate_limit.burst", "BURST", "bucket capacity (default RATE_LIMIT), likewise",
                      at(&settings::rate_limit, &rate_limit_settings::burst),
                      [](settings& s, const std::string& label) {
                          if (s.effective_burst() < 1)
                              throw config_error(label, "must be at least 1");
                      });
            // 0 in the file keeps the default: the same as requests_per_minute.
            row.read_json = [](const json& v, const std::string& field, settings& s) {
                double d = finite_number(v, field, "expected a non-negative number");
                if (!(d >= 0))
                    throw config_error(field, "expected a non-negative number");
                s.rate_limit.burst = d;
            };
            return row;
        }(),
        value("rate_limit.fallback_instances", "FALLBACK_INSTANCES",
              "instances sharing the Redis: each holds limit/N while it is away",
              at(&settings::rate_limit, &rate_limit_settings::fallback_instances),
              [](settings& s, const std::string& label) {
                  if (s.rate_limit.fallback_instances == 0)
                      throw config_error(label, "must be at least 1");
              }),
        value("rate_limit.fail_closed", "FAIL_CLOSED",
              "true: answer 503 while Redis is away instead of limiting locally",
              at(&settings::rate_limit, &rate_limit_settings::fail_closed)),
        value("rate_limit.concurrency_lease_ms",
              at(&settings::rate_limit, &rate_limit_settings::concurrency_lease),
              [](settings& s, const std::string& label) {
                  // Renewed every third of it: below 300 ms renewal would be busier than useful.
                  if (s.rate_limit.concurrency_lease.count() < 300)
                      throw config_error(label, "must be at least 300");
              }),

        // File only: budgets are set up with policies and prices, which live in the file too.
        value("budget.default_max_output_tokens",
              at(&settings::budget, &budget_settings::default_max_output_tokens),
              [](settings& s, const std::string& label) {
                  const auto n = s.budget.default_max_output_tokens;
                  if (n < 1 || n > 10'000'000)
                      throw config_error(label, "must be from 1 to 10000000");
              }),
        value("budget.max_body_bytes", at(&settings::budget, &budget_settings::max_body_bytes),
              [](settings& s, const std::string& label) {
                  const auto n = s.budget.max_body_bytes;
                  if (n < 1024 || n > 64 * 1024 * 1024)
                      throw config_error(label, "must be from 1024 (1 KiB) to 67108864 (64 MiB)");
              }),
        value("budget.hold_time_ms", at(&settings::budget, &budget_settings::hold_time),
              [](settings& s, const std::string& label) {
                  // Shorter than a slow stream, a hold would lapse before its settle.
                  if (s.budget.hold_time.count() < 1000)
                      throw config_error(label, "must be at least 1000");
              }),

        value("redis.url", "REDIS_URL",
              "redis://[:password@]host[:port][/db] (default redis://127.0.0.1:6379)",
              at(&settings::redis, &redis_settings::url),
              [](settings& s, const std::string& label) {
                  if (s.redis.url.rfind("redis://", 0) != 0)
                      // Not quoted: the URL may hold a password.
                      throw config_error(label, "must start with redis://");
              }),
        value("redis.command_timeout_ms", "REDIS_TIMEOUT_MS",
              "longest wait for one Redis reply (default 50)",
              at(&settings::redis, &redis_settings::command_timeout),
              [](settings& s, const std::string& label) {
                  if (s.redis.command_timeout.count() <= 0)
                      throw config_error(label, "must be at least 1");
              }),
        value("redis.connect_timeout_ms", at(&settings::redis, &redis_settings::connect_timeout)),
        value("redis.breaker_failures", at(&settings::redis, &redis_settings::breaker_failures),
              [](settings& s, const std::string& label) {
                  if (s.redis.breaker_failures == 0)
                      throw config_error(label, "must be at least 1");
              }),
        value("redis.breaker_probe_interval_ms",
              at(&settings::redis, &redis_settings::breaker_probe_interval)),
        value("redis.key_prefix", at(&settings::redis, &redis_settings::key_prefix),
              [](settings& s, const std::string& label) {
                  if (s.redis.key_prefix.empty() ||
                      s.redis.key_prefix.find_first_of("{} \r\n") != std::string::npos)
                      throw config_error(label, "must be non-empty without braces or spaces");
              }),

        value("server.bind_address", "BIND_ADDRESS",
              "host:port to listen on (default 127.0.0.1:3000)",
              at(&settings::server, &server_settings::bind_address),
              [](settings& s, const std::string& label) {
                  s.server.listen = checked_host_port(label, s.server.bind_address);
              }),
        value("server.threads", "THREADS", "worker threads (default: number of cores)",
              at(&settings::server, &server_settings::threads),
              [](settings& s, const std::string& label) {
                  if (s.server.threads > 256)
                      throw config_error(label, "must be between 0 and 256");
              }),
        value("server.header_timeout_ms", at(&settings::server, &server_settings::header_timeout)),
        value("server.idle_timeout_ms", at(&settings::server, &server_settings::idle_timeout)),
        value("server.max_header_bytes", at(&settings::server, &server_settings::max_header_bytes),
              [](settings& s, const std::string& label) {
                  if (s.server.max_header_bytes < 1024)
                      throw config_error(label, "must be at least 1024");
              }),
        value("server.max_body_bytes", at(&settings::server, &server_settings::max_body_bytes)),
        value("server.shutdown_timeout_ms",
              at(&settings::server, &server_settings::shutdown_timeout)),
        value("server.max_connections", at(&settings::server, &server_settings::max_connections),
              [](settings& s, const std::string& label) {
                  if (s.server.max_connections == 0)
                      throw config_error(label, "must be at least 1");
              }),
        value("server.api_prefix", at(&settings::server, &server_settings::api_prefix),
              [](settings& s, const std::string& label) {
                  const auto& prefix = s.server.api_prefix;
                  if (prefix.empty() || prefix.front() != '/' ||
                      (prefix.size() > 1 && prefix.back() == '/'))
                      throw config_error(label, "must start with / and not end with /");
              }),
        value("server.trusted_proxies", "TRUSTED_PROXIES",
              "CIDRs whose X-Forwarded-For is believed (comma-separated)",
              at(&settings::server, &server_settings::trusted_proxies),
              [](settings& s, const std::string& label) {
                  common::cidr_set probe;
                  for (const auto& cidr : s.server.trusted_proxies) {
                      try {
                          probe.add(cidr);
                      } catch (const std::invalid_argument& e) {
                          throw config_error(label, e.what());
                      }
                  }
              }),

        value("auth.token_cache_ttl_ms", at(&settings::auth, &auth_settings::token_cache_ttl)),
        value("auth.token_cache_size", at(&settings::auth, &auth_settings::token_cache_size)),

        value("admin.bind_address", "ADMIN_BIND_ADDRESS",
              "host:port of the admin API (default 127.0.0.1:3001)",
              at(&settings::admin, &admin_settings::bind_address),
              [](settings& s, const std::string& label) {
                  s.admin.listen = checked_host_port(label, s.admin.bind_address);
              }),
        value("admin.token", "ADMIN_TOKEN",
              "bearer token of the admin API (unset: the admin API is off)",
              at(&settings::admin, &admin_settings::token), validate_admin_token),

        value("metrics.bind_address", "METRICS_BIND_ADDRESS",
              "host:port answering GET /metrics without a token (unset: only on the admin API)",
              at(&settings::metrics, &metrics_settings::bind_address),
              [](settings& s, const std::string& label) {
                  if (s.metrics.bind_address.empty())
                      return;
                  s.metrics.listen = checked_host_port(label, s.metrics.bind_address);
                  if (s.metrics.bind_address == s.server.bind_address ||
                      s.metrics.bind_address == s.admin.bind_address)
                      throw config_error(label,
                                         "must differ from BIND_ADDRESS and "
                                         "ADMIN_BIND_ADDRESS");
              }),
        value("metrics.near_limit_ratio", "METRICS_NEAR_LIMIT_RATIO",
              "share of a limit used from which a request counts as near the limit (0.8)",
              at(&settings::metrics, &metrics_settings::near_limit_ratio),
              [](settings& s, const std::string& label) {
                  if (!(s.metrics.near_limit_ratio > 0 && s.metrics.near_limit_ratio <= 1))
                      throw config_error(label, "must be greater than 0 and at most 1");
              }),
        value("metrics.per_client_top_n", "METRICS_PER_CLIENT_TOP_N",
              "per-client series for the N busiest clients, the rest as client=\"other\" (0: none)",
              at(&settings::metrics, &metrics_settings::per_client_top_n),
              [](settings& s, const std::string& label) {
                  if (s.metrics.per_client_top_n > 1000)
                      throw config_error(label, "must be at most 1000");
              }),

        value("load_aware.enabled", at(&settings::load_aware, &load_aware_settings::enabled)),
        {.path = "load_aware.error_rate",
         .read_json = fraction(&load_aware_settings::error_rate),
         .check =
             [](settings& s, const std::string& label) {
                 if (!(s.load_aware.error_rate > 0 && s.load_aware.error_rate <= 1))
                     throw config_error(label, "must be greater than 0 and at most 1");
             }},
        {.path = "load_aware.latency_ms",
         .read_json =
             [](const json& v, const std::string& field, settings& s) {
                 millis_into(s.load_aware.latency, /*allow_zero=*/true)(v, field);
             },
         .check =
             [](settings& s, const std::string& label) {
                 if (s.load_aware.latency.count() < 0)
                     throw config_error(label, "must not be negative");
             }},
        value("load_aware.window_ms", at(&settings::load_aware, &load_aware_settings::window),
              [](settings& s, const std::string& label) {
                  if (s.load_aware.window.count() <= 0)
                      throw config_error(label, "must be at least 1");
              }),
        value("load_aware.min_requests",
              at(&settings::load_aware, &load_aware_settings::min_requests),
              [](settings& s, const std::string& label) {
                  if (s.load_aware.min_requests == 0)
                      throw config_error(label, "must be at least 1");
              }),
        {.path = "load_aware.scale",
         .read_json = fraction(&load_aware_settings::scale),
         .check =
             [](settings& s, const std::string& label) {
                 if (!(s.load_aware.scale > 0 && s.load_aware.scale < 1))
                     throw config_error(label, "must be between 0 and 1 (exclusive)");
             }},

        value("log_level", "LOG_LEVEL",
              "trace, debug, info, warn, error, critical, off (default info)",
              at(&settings::log_level),
              [](settings& s, const std::string& label) {
                  static const char* levels[] = {"trace", "debug",    "info", "warn",
                                                 "error", "critical", "off"};
                  if (std::find(std::begin(levels), std::end(levels), s.log_level) ==
                      std::end(levels))
                      throw config_error(label,
                                         "expected one of trace, debug, info, warn, error, "
                                         "critical, off; got \"" +
                                             s.log_level + "\"");
              }),
        value("log_format", "LOG_FORMAT",
              "text (default) or json: every log line one JSON object, access lines with\n"
              "their fields",
              at(&settings::log_format),
              [](settings& s, const std::string& label) {
                  if (s.log_format != "text" && s.log_format != "json")
                      throw config_error(label,
                                         "expected text or json, got \"" + s.log_format + "\"");
              }),
        value("errors.expose_limits", "EXPOSE_LIMIT_DETAILS",
              "true (default): a 429 body names the policy, scope, limit and window;\n"
              "false: only a generic message, retry_after and request_id",
              at(&settings::expose_limit_details)),
        value("store", "STORE", "redis (default) or memory: limits kept in this process only",
              at(&settings::store),
              [](settings& s, const std::string& label) {
                  if (s.store != "redis" && s.store != "memory")
                      throw config_error(label,
                                         "expected redis or memory, got \"" + s.store + "\"");
              }),

        // The rules: policy_json reads them; build_rule_set checks them as a whole.
        {.path = "policies",
         .read_json =
             [](const json& v, const std::string& field, settings& s) {
                 if (!v.is_array())
                     throw config_error(field, "expected an array of policy objects");
                 for (std::size_t i = 0; i < v.size(); ++i) {
                     // Named by the policy's name when it has a usable one: "policies.daily".
                     const json* name =
                         v[i].is_object() && v[i].contains("name") ? &v[i]["name"] : nullptr;
                     const bool named = name && name->is_string() &&
                                        is_valid_name(name->get_ref<const std::string&>());
                     const std::string path =
                         named ? field + "." + name->get<std::string>() : indexed(field, i);
                     auto p = policy_from_json(v[i], path);
                     if (p.name.empty())
                         throw config_error(path + ".name", "is required");
                     s.policies.push_back(std::move(p));
                 }
             }},
        {.path = "tiers",
         .read_json =
             [](const json& v, const std::string& field, settings& s) {
                 if (!v.is_object())
                     throw config_error(field,
                                        "expected an object: tier name -> {\"policies\": [...]}");
                 for (auto it = v.begin(); it != v.end(); ++it)
                     s.tiers.push_back(
                         tier_from_json(it.key(), it.value(), field + "." + it.key()));
             }},
        value("default_tier", "DEFAULT_TIER",
              "tier of newly registered tokens (default \"default\")", at(&settings::default_tier)),
        {.path = "bypass",
         .read_json = [](const json& v, const std::string& field,
                         settings& s) { s.bypass = access_list_from_json(v, field); }},
        {.path = "block",
         .read_json = [](const json& v, const std::string& field,
                         settings& s) { s.block = access_list_from_json(v, field); }},
        value("shadow_mode", "SHADOW_MODE", "true: decide and log every limit, enforce none",
              at(&settings::shadow_mode)),
        {.path = "registration",
         .read_json = [](const json& v, const std::string& field,
                         settings& s) { s.registration = registration_from_json(v, field); }},
        {.path = "registration.mode",
         .variable = "REGISTRATION_MODE",
         .help = "open (default), secret or closed",
         .read_variable =
             [](const std::string& text, const std::string& variable, settings& s) {
                 auto mode = limit::registration_mode_from(text);
                 if (!mode)
                     throw config_error(variable,
                                        "expected open, secret or closed, got \"" + text + "\"");
                 s.registration.mode = *mode;
             }},
        {.path = "registration.secret",
         .variable = "REGISTRATION_SECRET",
         .help = "with mode secret: the X-Registration-Secret clients must send",
         .read_variable = [](const std::string& text, const std::string&,
                             settings& s) { s.registration.secret = text; }},
        // Model (or prefix*) -> USD per million tokens; the overlay adds to it (admin API).
        {.path = "pricing",
         .read_json = [](const json& v, const std::string& field,
                         settings& s) { s.pricing = pricing_from_json(v, field); }},
    };
}

}  // namespace

const std::vector<setting>& settings_table() {
    static const std::vector<setting> table = make_table();
    return table;
}

std::string label(const setting& s) {
    if (s.variable.empty())
        return std::string(s.path);
    return std::string(s.variable) + " (" + std::string(s.path) + ")";
}

std::string label_of(std::string_view path) {
    for (const auto& row : settings_table())
        if (row.path == path)
            return label(row);
    return std::string(path);
}

}  // namespace ratelimit_proxy::config
