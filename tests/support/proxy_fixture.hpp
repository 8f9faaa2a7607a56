#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "beast_upstream.hpp"
#include "httpbin_server.hpp"
#include "mock_llm_upstream.hpp"
#include "proxy_process.hpp"
#include "redis_server.hpp"

namespace rlp_test {

// How proxy_fixture runs the daemon; what is not named here is proxy_process's default.
struct proxy_setup {
    std::string base_path;              // TARGET_API_URL = upstream.url(base_path)...
    std::string target_url;             // ...or this, when not empty
    env_list env;                       // more variables, as proxy_options::env
    std::optional<std::string> config;  // as proxy_options::config
    std::vector<std::string> args;      // as proxy_options::args
    bool wait_redis_ready = true;       // as proxy_options::wait_redis_ready
    bool register_token = false;        // start_proxy(): then POST /register once, into token
};

// One test's servers, on free ports and gone with the test: a fresh redis-server and an
// upstream (Upstream: the in-process beast_upstream, or Debian's httpbin), both started with
// the fixture; start_proxy() adds the daemon between them.
template <class Upstream>
class proxy_fixture : public ::testing::Test {
  protected:
    proxy_fixture() = default;
    // An upstream built from these arguments (httpbin_server's TLS files, say); a derived
    // fixture that makes them first does so in a base class listed before this one.
    template <class... Args>
    explicit proxy_fixture(std::in_place_t, Args&&... upstream_args)
        : upstream(std::forward<Args>(upstream_args)...) {}

    redis_server redis;
    Upstream upstream;
    std::unique_ptr<proxy_process> proxy;  // the last start_proxy()'s
    std::string token;                     // start_proxy({.register_token = true})'s

    // Stops the proxy started before, if any, then starts one and waits until it is ready.
    void start_proxy(proxy_setup setup = {});
    std::uint16_t port() const { return proxy->port(); }

    // What start_proxy(setup) runs (REDIS_URL = redis), for a test's further instances.
    proxy_options proxy_options_for(proxy_setup setup) const;
};

extern template class proxy_fixture<beast_upstream>;
extern template class proxy_fixture<httpbin_server>;
extern template class proxy_fixture<mock_llm_upstream>;

}  // namespace rlp_test
