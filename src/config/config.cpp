#include "ratelimit_proxy/config/config.hpp"

#include <boost/url/parse.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "json_reader.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/config/rule_overlay.hpp"
#include "ratelimit_proxy/proxy/cidr.hpp"
#include "ratelimit_proxy/proxy/http_text.hpp"

namespace ratelimit_proxy::config {

namespace {

using namespace detail;

const char* const known_variables[] = {
    "TARGET_API_URL",
    "TARGET_API_KEY",
    "TARGET_API_KEY_HEADER",
    "TARGET_API_KEY_FORMAT",
    "TARGET_CA_FILE",
    "RATE_LIMIT",
    "BURST",
    "REDIS_URL",
    "BIND_ADDRESS",
    "THREADS",
    "LOG_LEVEL",
    "REDIS_TIMEOUT_MS",
    "FALLBACK_INSTANCES",
    "FAIL_CLOSED",
    "DEFAULT_TIER",
    "SHADOW_MODE",
    "REGISTRATION_MODE",
    "REGISTRATION_SECRET",
    "TRUSTED_PROXIES",
    "ADMIN_BIND_ADDRESS",
    "ADMIN_TOKEN",
    "STORE",
};

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

bool parse_bool(const std::string& field, const std::string& text) {
    if (text == "1" || text == "true" || text == "yes" || text == "on")
        return true;
    if (text == "0" || text == "false" || text == "no" || text == "off")
        return false;
    throw config_error(field, "expected true or false, got \"" + text + "\"");
}

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

void validate_bind_address(const std::string& field, const std::string& address) {
    auto colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
        throw config_error(field, "expected host:port, got \"" + address + "\"");
    auto port = address.substr(colon + 1);
    if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
        std::stoul(port) > 65535)
        throw config_error(field, "invalid port in \"" + address + "\"");
}

// "a, b,,c" -> {"a", "b", "c"}
std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        auto first = item.find_first_not_of(" \t");
        if (first == std::string::npos)
            continue;
        auto last = item.find_last_not_of(" \t");
        out.push_back(item.substr(first, last - first + 1));
    }
    return out;
}

// The environment variable behind a JSON field the rule set names, so that the message
// says what the user actually set.
std::string with_variable(const std::string& field) {
    static const std::pair<const char*, const char*> variables[] = {
        {"default_tier", "DEFAULT_TIER"},
        {"registration.mode", "REGISTRATION_MODE"},
        {"registration.secret", "REGISTRATION_SECRET"},
    };
    for (const auto& [json_field, variable] : variables)
        if (field == json_field)
            return std::string(variable) + " (" + field + ")";
    return field;
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

}  // namespace

environment process_environment() {
    environment env;
    for (const char* name : known_variables) {
        if (const char* value = std::getenv(name))
            env[name] = value;
    }
    return env;
}

settings parse_json(const std::string& json_text, const std::string& origin) {
    json root;
    try {
        root = json::parse(json_text);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for 1e999
        throw config_error(origin, std::string("invalid JSON: ") + e.what());
    }
    settings s;
    object_reader top(root, "");
    top.section("upstream",
                [&u = s.upstream](object_reader& r) {
                    r.field("url", string_into(u.url))
                        .field("api_key", string_into(u.api_key))
                        .field("api_key_header", string_into(u.api_key_header))
                        .field("api_key_format", string_into(u.api_key_format))
                        .field("ca_file", string_into(u.ca_file))
                        .field("verify_tls", bool_into(u.verify_tls))
                        .field("connect_timeout_ms", millis_into(u.connect_timeout))
                        .field("response_timeout_ms", millis_into(u.response_timeout))
                        .field("idle_timeout_ms", millis_into(u.idle_timeout))
                        .field("max_idle_connections", unsigned_into(u.max_idle_connections))
                        .field("pool_idle_timeout_ms", millis_into(u.pool_idle_timeout));
                })
        .section("rate_limit",
                 [&rl = s.rate_limit](object_reader& r) {
                     r.field("requests_per_minute", positive_number_into(rl.requests_per_minute))
                         .field("burst",
                                [&](const json& v, const std::string& field) {
                                    // 0 keeps the default: the same as requests_per_minute.
                                    double d =
                                        finite_number(v, field, "expected a non-negative number");
                                    if (!(d >= 0))
                                        throw config_error(field, "expected a non-negative number");
                                    rl.burst = d;
                                })
                         .field("fallback_instances", unsigned_into(rl.fallback_instances))
                         .field("fail_closed", bool_into(rl.fail_closed));
                 })
        .section("redis",
                 [&rd = s.redis](object_reader& r) {
                     r.field("url", string_into(rd.url))
                         .field("command_timeout_ms", millis_into(rd.command_timeout))
                         .field("connect_timeout_ms", millis_into(rd.connect_timeout))
                         .field("breaker_failures", unsigned_into(rd.breaker_failures))
                         .field("breaker_probe_interval_ms", millis_into(rd.breaker_probe_interval))
                         .field("key_prefix", string_into(rd.key_prefix));
                 })
        .section("server",
                 [&sv = s.server](object_reader& r) {
                     r.field("bind_address", string_into(sv.bind_address))
                         .field("threads", unsigned_into(sv.threads))
                         .field("header_timeout_ms", millis_into(sv.header_timeout))
                         .field("idle_timeout_ms", millis_into(sv.idle_timeout))
                         .field("max_header_bytes", unsigned_into(sv.max_header_bytes))
                         .field("max_body_bytes", unsigned_into(sv.max_body_bytes))
                         .field("shutdown_timeout_ms", millis_into(sv.shutdown_timeout))
                         .field("max_connections", unsigned_into(sv.max_connections))
                         .field("api_prefix", string_into(sv.api_prefix))
                         .field("trusted_proxies", string_list_into(sv.trusted_proxies));
                 })
        .section("auth",
                 [&a = s.auth](object_reader& r) {
                     r.field("token_cache_ttl_ms", millis_into(a.token_cache_ttl))
                         .field("token_cache_size", unsigned_into(a.token_cache_size));
                 })
        .section("admin",
                 [&a = s.admin](object_reader& r) {
                     r.field("bind_address", string_into(a.bind_address))
                         .field("token", string_into(a.token));
                 })
        .section("load_aware",
                 [&la = s.load_aware](object_reader& r) {
                     auto fraction_into = [](double& out) {
                         return [&out](const json& v, const std::string& field) {
                             out = finite_number(v, field, "expected a number between 0 and 1");
                         };
                     };
                     r.field("enabled", bool_into(la.enabled))
                         .field("error_rate", fraction_into(la.error_rate))
                         .field("latency_ms", millis_into(la.latency, /*allow_zero=*/true))
                         .field("window_ms", millis_into(la.window))
                         .field("min_requests", unsigned_into(la.min_requests))
                         .field("scale", fraction_into(la.scale));
                 })
        .field("log_level", string_into(s.log_level))
        .field("store", string_into(s.store))
        .field("policies",
               [&](const json& v, const std::string& field) {
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
               })
        .field(
            "tiers",
            [&](const json& v, const std::string& field) {
                if (!v.is_object())
                    throw config_error(field,
                                       "expected an object: tier name -> {\"policies\": [...]}");
                for (auto it = v.begin(); it != v.end(); ++it)
                    s.tiers.push_back(tier_from_json(it.key(), it.value(), field + "." + it.key()));
            })
        .field("default_tier", string_into(s.default_tier))
        .field("bypass",
               [&](const json& v, const std::string& field) {
                   s.bypass = access_list_from_json(v, field);
               })
        .field("block",
               [&](const json& v, const std::string& field) {
                   s.block = access_list_from_json(v, field);
               })
        .field("shadow_mode", bool_into(s.shadow_mode))
        .field("registration", [&](const json& v, const std::string& field) {
            s.registration = registration_from_json(v, field);
        });
    top.reject_unknown();
    return s;
}

void apply_environment(settings& s, const environment& env) {
    auto get = [&](const char* name) -> const std::string* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : &it->second;
    };
    if (auto v = get("TARGET_API_URL"))
        s.upstream.url = *v;
    if (auto v = get("TARGET_API_KEY"))
        s.upstream.api_key = *v;
    if (auto v = get("TARGET_API_KEY_HEADER"))
        s.upstream.api_key_header = *v;
    if (auto v = get("TARGET_API_KEY_FORMAT"))
        s.upstream.api_key_format = *v;
    if (auto v = get("TARGET_CA_FILE"))
        s.upstream.ca_file = *v;
    if (auto v = get("RATE_LIMIT"))
        s.rate_limit.requests_per_minute = parse_positive_number("RATE_LIMIT", *v);
    if (auto v = get("BURST"))
        s.rate_limit.burst = parse_positive_number("BURST", *v);
    if (auto v = get("REDIS_URL"))
        s.redis.url = *v;
    if (auto v = get("BIND_ADDRESS"))
        s.server.bind_address = *v;
    if (auto v = get("THREADS"))
        s.server.threads = parse_unsigned("THREADS", *v);
    if (auto v = get("REDIS_TIMEOUT_MS"))
        s.redis.command_timeout = milliseconds(parse_unsigned("REDIS_TIMEOUT_MS", *v));
    if (auto v = get("FALLBACK_INSTANCES"))
        s.rate_limit.fallback_instances = parse_unsigned("FALLBACK_INSTANCES", *v);
    if (auto v = get("FAIL_CLOSED"))
        s.rate_limit.fail_closed = parse_bool("FAIL_CLOSED", *v);
    if (auto v = get("LOG_LEVEL"))
        s.log_level = *v;
    if (auto v = get("DEFAULT_TIER"))
        s.default_tier = *v;
    if (auto v = get("SHADOW_MODE"))
        s.shadow_mode = parse_bool("SHADOW_MODE", *v);
    if (auto v = get("REGISTRATION_MODE")) {
        auto mode = limit::registration_mode_from(*v);
        if (!mode)
            throw config_error("REGISTRATION_MODE",
                               "expected open, secret or closed, got \"" + *v + "\"");
        s.registration.mode = *mode;
    }
    if (auto v = get("REGISTRATION_SECRET"))
        s.registration.secret = *v;
    if (auto v = get("TRUSTED_PROXIES"))
        s.server.trusted_proxies = split_list(*v);
    if (auto v = get("ADMIN_BIND_ADDRESS"))
        s.admin.bind_address = *v;
    if (auto v = get("ADMIN_TOKEN"))
        s.admin.token = *v;
    if (auto v = get("STORE"))
        s.store = *v;
}

void validate(const settings& s) {
    // Name the variable most users set; the JSON path is in the README's table beside it.
    validate_url("TARGET_API_URL (upstream.url)", s.upstream.url);
    if (!is_valid_header_name(s.upstream.api_key_header))
        throw config_error("TARGET_API_KEY_HEADER (upstream.api_key_header)",
                           "is not a valid header name: \"" + s.upstream.api_key_header + "\"");
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
    for (auto name : managed_headers) {
        if (proxy::ascii_iequals(s.upstream.api_key_header, name))
            throw config_error("TARGET_API_KEY_HEADER (upstream.api_key_header)",
                               "names " + std::string(name) +
                                   ", which the proxy sets or removes itself; use the header "
                                   "the API reads its key from (e.g. Authorization or x-api-key)");
    }
    if (!s.upstream.api_key.empty() && s.upstream.api_key_format.find("{key}") == std::string::npos)
        throw config_error("TARGET_API_KEY_FORMAT (upstream.api_key_format)", "must contain {key}");
    for (char c : s.upstream.api_key) {
        if (c == '\r' || c == '\n' || c == '\0')
            throw config_error("TARGET_API_KEY (upstream.api_key)", "contains a line break or NUL");
    }
    if (!s.upstream.ca_file.empty()) {
        std::ifstream probe(s.upstream.ca_file);
        if (!probe)
            throw config_error("TARGET_CA_FILE (upstream.ca_file)",
                               "cannot read \"" + s.upstream.ca_file + "\"");
    }
    if (!(s.rate_limit.requests_per_minute > 0))
        throw config_error("RATE_LIMIT (rate_limit.requests_per_minute)",
                           "must be a positive number");
    if (s.rate_limit.fallback_instances == 0)
        throw config_error("FALLBACK_INSTANCES (rate_limit.fallback_instances)",
                           "must be at least 1");
    if (s.redis.command_timeout.count() <= 0)
        throw config_error("REDIS_TIMEOUT_MS (redis.command_timeout_ms)", "must be at least 1");
    if (s.redis.breaker_failures == 0)
        throw config_error("redis.breaker_failures", "must be at least 1");
    if (s.effective_burst() < 1)
        throw config_error("BURST (rate_limit.burst)", "must be at least 1");
    if (s.redis.url.rfind("redis://", 0) != 0)
        // Not quoted: the URL may hold a password.
        throw config_error("REDIS_URL (redis.url)", "must start with redis://");
    validate_bind_address("BIND_ADDRESS (server.bind_address)", s.server.bind_address);
    if (s.server.threads > 256)
        throw config_error("THREADS (server.threads)", "must be between 0 and 256");
    if (s.server.max_header_bytes < 1024)
        throw config_error("server.max_header_bytes", "must be at least 1024");
    if (s.server.max_connections == 0)
        throw config_error("server.max_connections", "must be at least 1");
    if (s.server.api_prefix.empty() || s.server.api_prefix.front() != '/' ||
        (s.server.api_prefix.size() > 1 && s.server.api_prefix.back() == '/'))
        throw config_error("server.api_prefix", "must start with / and not end with /");
    if (s.redis.key_prefix.empty() ||
        s.redis.key_prefix.find_first_of("{} \r\n") != std::string::npos)
        throw config_error("redis.key_prefix", "must be non-empty without braces or spaces");
    if (s.store != "redis" && s.store != "memory")
        throw config_error("STORE (store)", "expected redis or memory, got \"" + s.store + "\"");
    {
        proxy::cidr_set probe;
        for (const auto& cidr : s.server.trusted_proxies) {
            try {
                probe.add(cidr);
            } catch (const std::invalid_argument& e) {
                throw config_error("TRUSTED_PROXIES (server.trusted_proxies)", e.what());
            }
        }
    }
    validate_bind_address("ADMIN_BIND_ADDRESS (admin.bind_address)", s.admin.bind_address);
    if (!s.admin.token.empty()) {
        // It guards changing every limit: nothing guessable.
        if (s.admin.token.size() < 16)
            throw config_error("ADMIN_TOKEN (admin.token)", "must be at least 16 characters");
        for (unsigned char c : s.admin.token)
            if (c <= 0x20 || c == 0x7F)
                throw config_error("ADMIN_TOKEN (admin.token)",
                                   "must not contain spaces or control characters");
        if (s.admin.bind_address == s.server.bind_address)
            throw config_error("ADMIN_BIND_ADDRESS (admin.bind_address)",
                               "must differ from BIND_ADDRESS (server.bind_address)");
    }
    const auto& la = s.load_aware;
    if (!(la.error_rate > 0 && la.error_rate <= 1))
        throw config_error("load_aware.error_rate", "must be greater than 0 and at most 1");
    if (!(la.scale > 0 && la.scale < 1))
        throw config_error("load_aware.scale", "must be between 0 and 1 (exclusive)");
    if (la.min_requests == 0)
        throw config_error("load_aware.min_requests", "must be at least 1");
    if (la.window.count() <= 0)
        throw config_error("load_aware.window_ms", "must be at least 1");
    if (la.latency.count() < 0)
        throw config_error("load_aware.latency_ms", "must not be negative");
    static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (std::find(std::begin(levels), std::end(levels), s.log_level) == std::end(levels))
        throw config_error("LOG_LEVEL (log_level)",
                           "expected one of trace, debug, info, warn, error, "
                           "critical, off; got \"" +
                               s.log_level + "\"");
    // Tiers naming missing policies, bad CIDRs and the like: start-up errors, not surprises.
    try {
        build_rule_set(s, nlohmann::json());
    } catch (const config_error& e) {
        const std::string prefix = e.field() + ": ";
        throw config_error(with_variable(e.field()), std::string(e.what()).substr(prefix.size()));
    }
}

limit::policy default_policy(const settings& s) {
    limit::policy p;
    p.name = "default";
    p.algo = limit::algorithm::token_bucket;
    p.key = limit::key_kind::token;
    p.numbers.limit = s.rate_limit.requests_per_minute;
    p.numbers.window_seconds = 60;
    p.numbers.burst = s.effective_burst();
    return p;
}

settings load(const std::optional<std::string>& file_path, const environment& env) {
    settings s;
    if (file_path) {
        std::ifstream in(*file_path);
        if (!in)
            throw config_error("--config", "cannot read \"" + *file_path + "\"");
        std::stringstream text;
        text << in.rdbuf();
        s = parse_json(text.str(), *file_path);
    }
    apply_environment(s, env);
    if (s.policies.empty())
        s.policies.push_back(default_policy(s));
    validate(s);
    return s;
}

unsigned worker_threads(const settings& s) {
    const unsigned threads =
        s.server.threads ? s.server.threads : std::thread::hardware_concurrency();
    return threads == 0 ? 1 : threads;
}

}  // namespace ratelimit_proxy::config
