#include "ratelimit_proxy/config/config.hpp"

#include <boost/url/parse.hpp>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>

namespace ratelimit_proxy::config {

namespace {

using json = nlohmann::json;

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
};

// Reads one JSON object, each known member through its setter; anything else is an error
// so that a typo in a field name never passes silently.
class object_reader {
  public:
    object_reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
        if (!j_.is_object())
            throw config_error(path_.empty() ? "config" : path_, "expected an object");
    }

    template <class F>
    object_reader& field(const std::string& name, F&& set) {
        seen_.push_back(name);
        if (auto it = j_.find(name); it != j_.end())
            set(*it, qualified(name));
        return *this;
    }

    void reject_unknown() const {
        for (auto it = j_.begin(); it != j_.end(); ++it) {
            if (std::find(seen_.begin(), seen_.end(), it.key()) == seen_.end())
                throw config_error(qualified(it.key()), "unknown field");
        }
    }

    std::string qualified(const std::string& name) const {
        return path_.empty() ? name : path_ + "." + name;
    }

  private:
    const json& j_;
    std::string path_;
    std::vector<std::string> seen_;
};

auto string_into(std::string& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_string())
            throw config_error(field, "expected a string");
        out = v.get<std::string>();
    };
}

auto bool_into(bool& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_boolean())
            throw config_error(field, "expected true or false");
        out = v.get<bool>();
    };
}

template <class T>
auto unsigned_into(T& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_number_integer() || v.get<long long>() < 0)
            throw config_error(field, "expected a non-negative integer");
        out = static_cast<T>(v.get<unsigned long long>());
    };
}

auto millis_into(milliseconds& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_number_integer() || v.get<long long>() <= 0)
            throw config_error(field, "expected a positive integer (milliseconds)");
        out = milliseconds(v.get<long long>());
    };
}

auto positive_number_into(double& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
            throw config_error(field, "expected a positive number");
        out = v.get<double>();
    };
}

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
    top.field("upstream",
              [&](const json& v, const std::string& path) {
                  auto& u = s.upstream;
                  object_reader r(v, path);
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
                  r.reject_unknown();
              })
        .field("rate_limit",
               [&](const json& v, const std::string& path) {
                   object_reader r(v, path);
                   r.field("requests_per_minute",
                           positive_number_into(s.rate_limit.requests_per_minute))
                       .field("burst",
                              [&](const json& v, const std::string& field) {
                                  // 0 keeps the default: the same as requests_per_minute.
                                  if (!v.is_number() || !(v.get<double>() >= 0) ||
                                      !std::isfinite(v.get<double>()))
                                      throw config_error(field, "expected a non-negative number");
                                  s.rate_limit.burst = v.get<double>();
                              })
                       .field("fallback_instances", unsigned_into(s.rate_limit.fallback_instances))
                       .field("fail_closed", bool_into(s.rate_limit.fail_closed));
                   r.reject_unknown();
               })
        .field("redis",
               [&](const json& v, const std::string& path) {
                   auto& rd = s.redis;
                   object_reader r(v, path);
                   r.field("url", string_into(rd.url))
                       .field("command_timeout_ms", millis_into(rd.command_timeout))
                       .field("connect_timeout_ms", millis_into(rd.connect_timeout))
                       .field("breaker_failures", unsigned_into(rd.breaker_failures))
                       .field("breaker_probe_interval_ms", millis_into(rd.breaker_probe_interval))
                       .field("key_prefix", string_into(rd.key_prefix));
                   r.reject_unknown();
               })
        .field("server",
               [&](const json& v, const std::string& path) {
                   auto& sv = s.server;
                   object_reader r(v, path);
                   r.field("bind_address", string_into(sv.bind_address))
                       .field("threads", unsigned_into(sv.threads))
                       .field("header_timeout_ms", millis_into(sv.header_timeout))
                       .field("idle_timeout_ms", millis_into(sv.idle_timeout))
                       .field("max_header_bytes", unsigned_into(sv.max_header_bytes))
                       .field("max_body_bytes", unsigned_into(sv.max_body_bytes))
                       .field("shutdown_timeout_ms", millis_into(sv.shutdown_timeout))
                       .field("max_connections", unsigned_into(sv.max_connections))
                       .field("api_prefix", string_into(sv.api_prefix));
                   r.reject_unknown();
               })
        .field("auth",
               [&](const json& v, const std::string& path) {
                   object_reader r(v, path);
                   r.field("token_cache_ttl_ms", millis_into(s.auth.token_cache_ttl))
                       .field("token_cache_size", unsigned_into(s.auth.token_cache_size));
                   r.reject_unknown();
               })
        .field("log_level", string_into(s.log_level));
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
}

void validate(const settings& s) {
    // Name the variable most users set; the JSON path is in the README's table beside it.
    validate_url("TARGET_API_URL (upstream.url)", s.upstream.url);
    if (!is_valid_header_name(s.upstream.api_key_header))
        throw config_error("TARGET_API_KEY_HEADER (upstream.api_key_header)",
                           "is not a valid header name: \"" + s.upstream.api_key_header + "\"");
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
    static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (std::find(std::begin(levels), std::end(levels), s.log_level) == std::end(levels))
        throw config_error("LOG_LEVEL (log_level)",
                           "expected one of trace, debug, info, warn, error, "
                           "critical, off; got \"" +
                               s.log_level + "\"");
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
    validate(s);
    return s;
}

}  // namespace ratelimit_proxy::config
