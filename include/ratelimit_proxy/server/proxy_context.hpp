#pragma once

#include <memory>

#include "ratelimit_proxy/auth/token_store.hpp"
#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/limit/decision.hpp"
#include "ratelimit_proxy/limit/memory_limiter.hpp"
#include "ratelimit_proxy/proxy/header_rewrite.hpp"
#include "ratelimit_proxy/proxy/upstream_target.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

namespace boost::asio::ssl {
class context;
}

namespace ratelimit_proxy::server {

// Everything derived from the configuration, built once and shared read-only by all workers.
struct proxy_context {
    config::settings settings;
    proxy::upstream_target upstream;
    proxy::request_rewrite rewrite;
    limit::policy policy;
    limit::policy fallback_policy;  // this instance's share, while Redis is away
    std::unique_ptr<limit::shared_memory_limiter> fallback;
    std::unique_ptr<auth::known_tokens> known;  // tokens verified by any worker
    redis::endpoint redis_endpoint;
    redis::script token_bucket;
    std::unique_ptr<boost::asio::ssl::context> tls;  // set for https upstreams

    explicit proxy_context(const config::settings& s);
    ~proxy_context();
};

}  // namespace ratelimit_proxy::server
