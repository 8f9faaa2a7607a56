#pragma once

#include <functional>
#include <memory>

#include "ratelimit_proxy/config/config.hpp"

namespace ratelimit_proxy::server {

// The whole daemon: worker threads, the listener, the rules and admin API, and signal
// handling. run() blocks until SIGTERM or SIGINT, drains in-flight requests (bounded by
// server.shutdown_timeout) and returns the process exit code. SIGHUP calls `reload` (which
// reads and validates the config file again, throwing config_error) and applies its rules.
class server {
  public:
    explicit server(const config::settings& settings,
                    std::function<config::settings()> reload = {});
    ~server();
    int run();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace ratelimit_proxy::server
