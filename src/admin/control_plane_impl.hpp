#pragma once

// Private to src/admin: the control plane's state and its "update the overlay" operation,
// shared by control_plane.cpp and the admin API.

#include <nlohmann/json.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "ratelimit_proxy/admin/control_plane.hpp"
#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::admin {

// An answer to give instead of going on (404, 409 ...), thrown by a mutation.
struct api_error : std::runtime_error {
    api_error(unsigned status, nlohmann::json body)
        : std::runtime_error(body.value("message", std::string("admin API error"))),
          status(status),
          body(std::move(body)) {}
    unsigned status;
    nlohmann::json body;
};

nlohmann::json error_body(std::string_view error, std::string_view message,
                          std::string_view field = {});
// 400 {"error":"invalid","field":...,"message":...} from a config_error.
nlohmann::json invalid_body(const config::config_error& e);

// The rules in force and the admin overlay they were built from (always a pair).
struct rules_snapshot {
    std::shared_ptr<const limit::rule_set> rules;
    std::shared_ptr<const nlohmann::json> overlay;  // an object, maybe empty
};

// The result of update(): status 200 with the new version and rules, or an HTTP error
// status with its JSON body.
struct update_result {
    unsigned status = 200;
    nlohmann::json body;
    std::uint64_t version = 0;
    std::shared_ptr<const limit::rule_set> rules;
};

class control_plane::impl : public std::enable_shared_from_this<control_plane::impl> {
  public:
    // Changes the overlay in place. `before` are the rules built from the overlay as read.
    // May throw api_error or config::config_error (answered 400).
    using mutation = std::function<void(nlohmann::json& overlay, const limit::rule_set& before)>;

    static constexpr int max_update_attempts = 3;
    static constexpr std::chrono::milliseconds poll_interval{200};

    impl(boost::asio::io_context& io, const config::settings& file, publisher publish);

    void start();
    void stop();
    void reload_file(const config::settings& file);

    std::shared_ptr<const limit::rule_set> current() const;
    rules_snapshot snapshot() const;
    // The config file's rules alone (to tell which policies and tiers the file defines).
    std::shared_ptr<const limit::rule_set> file_rules() const;

    // Control io_context thread only.
    const config::settings& file() const { return file_; }
    // No tier in the file nor in the overlay: one implicit tier (the default) holds every
    // policy.
    bool tiers_implicit(const nlohmann::json& overlay) const;
    redis::connection& redis() { return redis_; }
    const std::string& key_prefix() const { return prefix_; }
    boost::asio::io_context& io() { return io_; }

    // Reads {prefix}:admin:state and :version, applies `m`, validates the result with
    // build_rule_set, and writes it only if the version has not moved meanwhile (retried up
    // to max_update_attempts times); then applies it here at once. `done` runs on the
    // control io_context. A mutation that leaves the overlay unchanged still bumps the
    // version (every instance then rebuilds its rules and drops its token caches).
    void update(mutation m, std::function<void(update_result)> done);

    const std::string& version_key() const { return version_key_; }
    const std::string& state_key() const { return state_key_; }
    const std::string& changes_channel() const { return changes_channel_; }

  private:
    void schedule_poll();
    void poll();
    void fetch();
    void on_fetched(redis::outcome o, redis::reply&& r);
    // Builds and publishes; false (logged) when the overlay does not build.
    bool apply(const nlohmann::json& overlay, std::uint64_t version, std::string_view why);
    void install(std::shared_ptr<const limit::rule_set> rules,
                 std::shared_ptr<const nlohmann::json> overlay, std::string_view why);
    void attempt_update(std::shared_ptr<mutation> m,
                        std::shared_ptr<std::function<void(update_result)>> done, int attempt);

    boost::asio::io_context& io_;
    publisher publish_;

  public:
    // Counters of the running process for GET /admin/stats (set by the server; read on the
    // control thread).
    std::function<nlohmann::json()> runtime_stats_;

  private:
    std::string prefix_;
    std::string version_key_;
    std::string state_key_;
    std::string changes_channel_;
    redis::connection redis_;
    boost::asio::steady_timer timer_;

    // Control thread only.
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
};

}  // namespace ratelimit_proxy::admin
