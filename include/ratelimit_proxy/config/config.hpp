#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

namespace ratelimit_proxy::config {

using std::chrono::milliseconds;

struct upstream_settings {
    std::string url;                               // TARGET_API_URL, http:// or https://
    std::string api_key;                           // TARGET_API_KEY, may be empty
    std::string api_key_header = "Authorization";  // e.g. "x-api-key"
    std::string api_key_format = "Bearer {key}";   // {key} is replaced by the key
    std::string ca_file;                           // extra CA bundle for TLS verification
    bool verify_tls = true;
    milliseconds connect_timeout{5000};
    milliseconds response_timeout{60000};   // until the response header arrives
    milliseconds idle_timeout{60000};       // between body chunks, either direction
    std::size_t max_idle_connections = 64;  // kept alive per worker thread
    milliseconds pool_idle_timeout{30000};
};

struct rate_limit_settings {
    double requests_per_minute = 60;  // RATE_LIMIT
    double burst = 0;                 // BURST; 0 means "same as requests_per_minute"
    // While Redis is unreachable each instance limits locally with limit / fallback_instances
    // (the number of proxy instances sharing the Redis), unless fail_closed: then 503.
    unsigned fallback_instances = 1;  // FALLBACK_INSTANCES
    bool fail_closed = false;         // FAIL_CLOSED
};

struct redis_settings {
    std::string url = "redis://127.0.0.1:6379";  // REDIS_URL
    milliseconds command_timeout{50};            // REDIS_TIMEOUT_MS
    unsigned breaker_failures = 3;  // consecutive failures that open the circuit breaker
    milliseconds breaker_probe_interval{1000};
    milliseconds connect_timeout{2000};
    std::string key_prefix = "rlp";
};

struct server_settings {
    std::string bind_address = "127.0.0.1:3000";  // BIND_ADDRESS
    unsigned threads = 0;                         // THREADS; 0 means the core count
    milliseconds header_timeout{10000};           // to receive a whole request header
    milliseconds idle_timeout{60000};             // keep-alive wait for the next request
    std::size_t max_header_bytes = 16 * 1024;
    std::uint64_t max_body_bytes = 0;  // 0 means unlimited (streamed)
    milliseconds shutdown_timeout{10000};
    std::size_t max_connections = 20000;
    std::string api_prefix = "/api";
};

struct auth_settings {
    milliseconds token_cache_ttl{30000};
    std::size_t token_cache_size = 100000;
};

struct settings {
    upstream_settings upstream;
    rate_limit_settings rate_limit;
    redis_settings redis;
    server_settings server;
    auth_settings auth;
    std::string log_level = "info";  // LOG_LEVEL: trace debug info warn error critical off

    double effective_burst() const {
        return rate_limit.burst > 0 ? rate_limit.burst : rate_limit.requests_per_minute;
    }
};

// A configuration problem, with the field it is about (as the user wrote it: an
// environment variable name or a JSON path such as "upstream.connect_timeout_ms").
class config_error : public std::runtime_error {
  public:
    config_error(std::string field, const std::string& problem)
        : std::runtime_error(field + ": " + problem), field_(std::move(field)) {}
    const std::string& field() const { return field_; }

  private:
    std::string field_;
};

using environment = std::map<std::string, std::string>;

// Reads the process environment (only the variables this program knows).
environment process_environment();

// Builds settings from defaults, then the JSON file (if any), then the environment, and
// validates them. Throws config_error.
settings load(const std::optional<std::string>& file_path, const environment& env);
settings parse_json(const std::string& json_text, const std::string& origin);
void apply_environment(settings& s, const environment& env);
void validate(const settings& s);

}  // namespace ratelimit_proxy::config
