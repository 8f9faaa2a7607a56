#pragma once

#include <nlohmann/json.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::admin {

// The rules in force and the admin overlay they were built from (always a pair).
struct rules_snapshot {
    std::shared_ptr<const limit::rule_set> rules;
    std::shared_ptr<const nlohmann::json> overlay;  // an object, maybe empty
};

// The result of an overlay update: status 200 with the new version and rules, or an HTTP
// error status with its JSON body.
struct update_result {
    unsigned status = 200;
    nlohmann::json body;
    std::uint64_t version = 0;
    std::shared_ptr<const limit::rule_set> rules;
    std::shared_ptr<const nlohmann::json> overlay;  // the one `rules` were built from
};

// Keeps the rules every instance applies: the config file plus the admin overlay stored in
// Redis (limit::admin_state_key, a JSON document, and limit::admin_version_key, a counter
// bumped on every change; keys.hpp). The overlay poll (overlay_poll.cpp) reads the version on
// this object's own Redis connection and, when it moves (or the file is reloaded), builds a
// new rule set and hands it to `publish`. Runs on the control io_context; never blocks it.
// Outlives every admin request (the server owns it and runs the io_context within its life).
class control_plane {
  public:
    using publisher = std::function<void(std::shared_ptr<const limit::rule_set>)>;
    // Changes the overlay in place. `before` are the rules built from the overlay as read.
    // May throw api_error (api_error.hpp) or config::config_error (answered 400).
    using mutation = std::function<void(nlohmann::json& overlay, const limit::rule_set& before)>;

    static constexpr int max_update_attempts = 3;
    static constexpr std::chrono::milliseconds poll_interval{200};

    control_plane(boost::asio::io_context& io, const config::settings& file, publisher publish);
    ~control_plane();
    control_plane(const control_plane&) = delete;
    control_plane& operator=(const control_plane&) = delete;

    // Any thread. Before Redis has answered: the rules from the config file alone.
    std::shared_ptr<const limit::rule_set> current() const;
    rules_snapshot snapshot() const;
    // The config file's rules alone (to tell which policies and tiers the file defines).
    std::shared_ptr<const limit::rule_set> file_rules() const;

    // Any thread; the work is done on the control io_context.
    void start();
    void stop();
    // SIGHUP: rebuild from a newly read file (the overlay stays). The caller has validated it.
    void reload_file(const config::settings& file);
    // What GET /admin/stats reports under "runtime": counters of the process (Redis commands
    // and writes, cache sizes...). Set before start(); called on the control thread.
    void set_runtime_stats(std::function<nlohmann::json()> stats);
    // Nothing when no one set them.
    std::optional<nlohmann::json> runtime_stats() const;

    // Control io_context thread only from here on.
    // No tier in the file nor in the overlay: one implicit tier (the default) holds every
    // policy.
    bool tiers_implicit(const nlohmann::json& overlay) const;
    redis::connection& redis() { return redis_; }
    const std::string& key_prefix() const { return prefix_; }

    // Reads the overlay and its version, applies `m`, validates the result with
    // build_rule_set, and writes it only if the version has not moved meanwhile (retried up
    // to max_update_attempts times); then applies it here at once.
    // `m` must live until the update is done (the caller awaits it).
    boost::asio::awaitable<update_result> update(const mutation& m);
    // The change that changes nothing but the version: every instance then rebuilds its
    // rules and drops its token caches and over-limit cache (a token patched or revoked, a
    // bucket reset).
    boost::asio::awaitable<update_result> bump_version();

  private:
    // The overlay poll (overlay_poll.cpp).
    void schedule_poll();
    void poll();
    void fetch();
    void on_fetched(redis::outcome o, redis::reply&& r);

    void rebuild_from_file(const config::settings& file);
    // Builds and publishes; false (logged) when the overlay does not build.
    bool apply(const nlohmann::json& overlay, std::uint64_t version, std::string_view why);
    void install(std::shared_ptr<const limit::rule_set> rules,
                 std::shared_ptr<const nlohmann::json> overlay, std::string_view why);

    boost::asio::io_context& io_;
    publisher publish_;
    std::function<nlohmann::json()> runtime_stats_;
    std::string prefix_;
    std::string version_key_;
    std::string state_key_;

    // Control thread only. Declared before redis_: a connection being destroyed answers its
    // pending commands inline, and those handlers read stopped_.
    config::settings file_;
    std::uint64_t applied_version_ = 0;
    std::optional<std::uint64_t> failed_version_;  // logged once, not refetched every poll
    bool fetch_pending_ = false;                   // first load, or after a file reload
    bool in_flight_ = false;
    bool stopped_ = false;
    bool started_ = false;
    bool warned_unreachable_ = false;

    mutable std::mutex mutex_;  // guards the three below: current() runs on any thread
    std::shared_ptr<const limit::rule_set> current_;
    std::shared_ptr<const nlohmann::json> overlay_;
    std::shared_ptr<const limit::rule_set> file_rules_;

    redis::connection redis_;
    boost::asio::steady_timer timer_;
};

// The admin HTTP API on ADMIN_BIND_ADDRESS (JSON, Bearer ADMIN_TOKEN), with GET /metrics;
// not started when no admin token is configured. And, on METRICS_BIND_ADDRESS when set, a
// listener answering GET /metrics alone, without a token (for Prometheus).
class admin_server {
  public:
    admin_server(boost::asio::io_context& io, const config::settings& file, control_plane& rules);
    ~admin_server();
    // Before start(): what GET /metrics answers (the Prometheus text), on the control thread.
    void set_metrics(std::function<std::string()> source);
    void start();  // throws std::runtime_error if it cannot listen
    void stop();

    class impl;

  private:
    std::shared_ptr<impl> admin_;
    std::shared_ptr<impl> metrics_;
};

}  // namespace ratelimit_proxy::admin
