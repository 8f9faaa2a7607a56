#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ratelimit_proxy/config/host_port.hpp"
#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/metering/pricing.hpp"

namespace ratelimit_proxy::config {

using std::chrono::milliseconds;

// What each setting is called in the file and the environment, how it is read and checked:
// settings_table.hpp. The defaults are the members' initializers.

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
    // How long a concurrency slot outlives its holder unrenewed (a crashed instance's slots
    // come back within it); live requests renew theirs every third of it.
    milliseconds concurrency_lease{60000};
};

// Metered policies (meter tokens or usd; JSON "budget").
struct budget_settings {
    // Put into a request that names no max tokens, so that its reservation is a true bound.
    std::int64_t default_max_output_tokens = 4096;
    // A metered request's body is read whole before it is checked (its model and bound).
    std::uint64_t max_body_bytes = 8 * 1024 * 1024;
    // How long a reservation outlives an unsettled request (the proxy died mid-stream).
    milliseconds hold_time{900000};
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
    host_port listen;                             // bind_address as validate() parsed it
    unsigned threads = 0;                         // THREADS; 0 means the core count
    milliseconds header_timeout{10000};           // to receive a whole request header
    milliseconds idle_timeout{60000};             // keep-alive wait for the next request
    std::size_t max_header_bytes = 16 * 1024;
    std::uint64_t max_body_bytes = 0;  // 0 means unlimited (streamed)
    milliseconds shutdown_timeout{10000};
    std::size_t max_connections = 20000;
    std::string api_prefix = "/api";
    // Proxies (CIDRs) whose X-Forwarded-For is believed when resolving the client address.
    std::vector<std::string> trusted_proxies;  // TRUSTED_PROXIES, comma-separated
};

struct auth_settings {
    milliseconds token_cache_ttl{30000};
    std::size_t token_cache_size = 100000;
};

struct admin_settings {
    std::string bind_address = "127.0.0.1:3001";  // ADMIN_BIND_ADDRESS
    host_port listen;                             // bind_address as validate() parsed it
    std::string token;  // ADMIN_TOKEN; empty: the admin API is off. At least 16 characters.
};

// What GET /metrics exports (JSON "metrics").
struct metrics_settings {
    // METRICS_BIND_ADDRESS: host:port of a listener answering GET /metrics without the admin
    // token (for Prometheus); empty: /metrics only on the admin listener.
    std::string bind_address;
    host_port listen;               // bind_address as validate() parsed it
    double near_limit_ratio = 0.8;  // (0, 1]: an allowed request at this share used is near
    unsigned per_client_top_n = 0;  // 0: no per-client series; else at most this many clients
};

// Scaling limits down while the upstream struggles (JSON "load_aware"): thresholds over a
// short window of upstream responses; the limiter that applies them documents the rule.
struct load_aware_settings {
    bool enabled = false;
    double error_rate = 0.5;  // (0, 1]: share of 5xx / upstream failures
    milliseconds latency{0};  // 0: latency is not considered
    milliseconds window{10000};
    unsigned min_requests = 20;
    double scale = 0.5;  // (0, 1)
};

struct settings {
    upstream_settings upstream;
    rate_limit_settings rate_limit;
    budget_settings budget;
    redis_settings redis;
    server_settings server;
    auth_settings auth;
    admin_settings admin;
    metrics_settings metrics;
    load_aware_settings load_aware;
    std::string log_level = "info";   // LOG_LEVEL: trace debug info warn error critical off
    std::string log_format = "text";  // LOG_FORMAT: text, or json (one object per line)
    // EXPOSE_LIMIT_DETAILS (errors.expose_limits): a 429 body names the policy, its scope,
    // limit and window; false: a generic message, retry_after and request_id only.
    bool expose_limit_details = true;
    std::string store =
        "redis";  // STORE: "redis" or "memory" (limits in this process only; tokens stay in Redis)

    // Policies and tiers (JSON "policies", "tiers"). Without policies, load() adds one:
    // default_policy(). Without tiers, one tier named default_tier holds every policy.
    std::vector<limit::policy> policies;
    std::vector<limit::tier> tiers;
    std::string default_tier = "default";      // DEFAULT_TIER: for tokens without a tier
    limit::access_list bypass;                 // JSON "bypass": {"tokens": [], "cidrs": []}
    limit::access_list block;                  // JSON "block"
    bool shadow_mode = false;                  // SHADOW_MODE: decide and log, never enforce
    limit::registration_control registration;  // REGISTRATION_MODE, REGISTRATION_SECRET
    // JSON "pricing": USD per million tokens per model, for meter usd policies.
    metering::price_table pricing;

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

// Reads the process environment (only the variables of the settings table).
environment process_environment();

// Builds settings from defaults, then the JSON file (if any), then the environment, and
// validates them. Throws config_error.
settings load(const std::optional<std::string>& file_path, const environment& env);
settings parse_json(const std::string& json_text, const std::string& origin);
void apply_environment(settings& s, const environment& env);
// Checks every setting, keeping what the checks parse (server.listen, admin.listen). Also
// builds the rule set (build_rule_set(s, {})) so that a tier naming a missing policy and the
// like fail at start-up.
void validate(settings& s);

// The number of worker threads: THREADS, or the core count when it is 0 (at least 1).
unsigned worker_threads(const settings& s);

// The policy used when the file defines none: token bucket per token, RATE_LIMIT requests
// per 60 s, capacity effective_burst().
limit::policy default_policy(const settings& s);

}  // namespace ratelimit_proxy::config
