#include "proxy_context.hpp"

#include <boost/asio/ssl/context.hpp>

#include <algorithm>

#include "ratelimit_proxy/limit/lua_scripts.hpp"

namespace ratelimit_proxy::server {

namespace {
std::string key_value(const config::upstream_settings& u) {
    if (u.api_key.empty())
        return {};
    std::string value = u.api_key_format;
    const auto pos = value.find("{key}");
    value.replace(pos, 5, u.api_key);
    return value;
}

std::unique_ptr<boost::asio::ssl::context> make_tls_context(const config::upstream_settings& u) {
    namespace ssl = boost::asio::ssl;
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (u.verify_tls) {
        ctx->set_default_verify_paths();
        if (!u.ca_file.empty())
            ctx->load_verify_file(u.ca_file);
        ctx->set_verify_mode(ssl::verify_peer);
    } else {
        ctx->set_verify_mode(ssl::verify_none);
    }
    return ctx;
}
load_rule load_rule_from(const config::settings& s) {
    load_rule r;
    r.enabled = s.load_aware.enabled;
    r.error_rate = s.load_aware.error_rate;
    r.latency = s.load_aware.latency;
    r.window = s.load_aware.window;
    r.min_requests = s.load_aware.min_requests;
    r.scale = s.load_aware.scale;
    return r;
}
}  // namespace

proxy_context::proxy_context(const config::settings& s, unsigned workers)
    : settings(s),
      upstream(proxy::upstream_target::parse(s.upstream.url)),
      redis_endpoint(redis::parse_url(s.redis.url)),
      policies(lua::policies),
      settle(lua::settle) {
    rewrite.host_header = upstream.host_header;
    rewrite.key_header = s.upstream.api_key_header;
    rewrite.key_value = key_value(s.upstream);
    for (const auto& network : s.server.trusted_proxies)
        trusted_proxies.add(network);
    fallback = std::make_unique<limit::shared_memory_store>();
    memory = std::make_unique<limit::shared_memory_store>();
    known = std::make_unique<auth::known_tokens>(s.auth.token_cache_size);
    load = std::make_unique<load_monitor>(load_rule_from(s), workers);
    if (upstream.tls)
        tls = make_tls_context(s.upstream);
}

proxy_context::~proxy_context() = default;

}  // namespace ratelimit_proxy::server
