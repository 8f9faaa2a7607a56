#pragma once

#include <memory>

#include "ratelimit_proxy/config/config.hpp"

namespace ratelimit_proxy::server {

// The whole daemon: worker threads, the listener and signal handling. run() blocks until
// SIGTERM or SIGINT, drains in-flight requests (bounded by server.shutdown_timeout) and
// returns the process exit code.
class server {
  public:
    explicit server(const config::settings& settings);
    ~server();
    int run();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace ratelimit_proxy::server
