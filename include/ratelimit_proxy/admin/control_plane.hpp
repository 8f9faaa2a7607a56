#pragma once

#include <boost/asio/io_context.hpp>
#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <memory>

#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"

namespace ratelimit_proxy::admin {

// Keeps the rules every instance applies: the config file plus the admin overlay stored in
// Redis ({prefix}:admin:state, a JSON document, and {prefix}:admin:version, a counter bumped
// on every change). Polls the version on its own Redis connection and, when it moves (or the
// file is reloaded), builds a new rule set and hands it to `publish`. Runs on the control
// io_context; never blocks it.
class control_plane {
  public:
    using publisher = std::function<void(std::shared_ptr<const limit::rule_set>)>;

    control_plane(boost::asio::io_context& io, const config::settings& file, publisher publish);
    ~control_plane();

    // The rules from the config file alone, before Redis has answered.
    std::shared_ptr<const limit::rule_set> current() const;

    void start();
    void stop();
    // SIGHUP: rebuild from a newly read file (the overlay stays). The caller has validated it.
    void reload_file(const config::settings& file);
    // What GET /admin/stats reports under "runtime": counters of the process (Redis commands
    // and writes, cache sizes...). Called on the control thread.
    void set_runtime_stats(std::function<nlohmann::json()> stats);

    class impl;

  private:
    friend class admin_server;  // the admin API updates the overlay through impl
    std::shared_ptr<impl> impl_;
};

// The admin HTTP API on ADMIN_BIND_ADDRESS (JSON, Bearer ADMIN_TOKEN). Not started when no
// admin token is configured.
class admin_server {
  public:
    admin_server(boost::asio::io_context& io, const config::settings& file, control_plane& rules);
    ~admin_server();
    void start();  // throws std::runtime_error if it cannot listen
    void stop();

    class impl;

  private:
    std::shared_ptr<impl> impl_;
};

}  // namespace ratelimit_proxy::admin
