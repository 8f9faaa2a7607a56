#pragma once

#include <memory>

#include "ratelimit_proxy/auth/token_store.hpp"
#include "ratelimit_proxy/common/cidr.hpp"
#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/limit/memory_limiter.hpp"
#include "ratelimit_proxy/proxy/header_rewrite.hpp"
#include "ratelimit_proxy/proxy/upstream_target.hpp"
#include "ratelimit_proxy/redis/connection.hpp"
#include "ratelimit_proxy/server/load_monitor.hpp"

namespace boost::asio::ssl {
class context;
}

namespace ratelimit_proxy::server {

// Everything derived from the configuration, built once and shared read-only by all workers.
// The rules (policies, tiers, access lists) change at run time and live in each worker.
struct proxy_context {
    config::settings settings;
    proxy::upstream_target upstream;
    proxy::request_rewrite rewrite;
    common::cidr_set trusted_proxies;
    // The local fallback while Redis is away, and the store itself for STORE=memory.
    std::unique_ptr<limit::shared_memory_store> fallback;
    std::unique_ptr<limit::shared_memory_store> memory;
    std::unique_ptr<auth::known_tokens> known;  // tokens verified by any worker
    std::unique_ptr<load_monitor> load;
    redis::endpoint redis_endpoint;
    redis::script policies;
    redis::script settle;  // lua/settle.lua: metered budgets
    std::unique_ptr<boost::asio::ssl::context> tls;  // set for https upstreams

    proxy_context(const config::settings& s, unsigned workers);
    ~proxy_context();
};

}  // namespace ratelimit_proxy::server
