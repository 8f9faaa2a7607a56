// HTTPS upstreams: verification against the system store plus TARGET_CA_FILE.
#include <gtest/gtest.h>

#include "httpbin_server.hpp"
#include "proxy_process.hpp"
#include "redis_server.hpp"
#include "test_helpers.hpp"
#include "tls_material.hpp"

using namespace rlp_test;

namespace {

class TlsUpstreamTest : public ::testing::Test {
  protected:
    redis_server redis;
    tls_material tls = tls_material::generate();
    httpbin_server httpbin{httpbin_server::tls_files{tls.server_cert, tls.server_key}};
    const std::string api_key = "sk-tls-" + random_hex(12);
};

TEST_F(TlsUpstreamTest, ProxiesToHttpsUpstreamTrustedThroughCaFile) {
    proxy_process proxy{{.target_url = "https://localhost:" + std::to_string(httpbin.port()),
                         .redis_url = redis.url(),
                         .env = {{"TARGET_CA_FILE", tls.ca_cert}, {"TARGET_API_KEY", api_key}}}};
    auto token = register_token(proxy.port());
    auto r = http_get(proxy.port(), "/api/get?via=tls", bearer(token));
    ASSERT_EQ(r.status, 200u) << r.body << "\nproxy log:\n" << proxy.log();
    auto j = r.json();
    EXPECT_EQ(j["args"]["via"], "tls");
    EXPECT_EQ(j["headers"]["Host"], "localhost:" + std::to_string(httpbin.port()));
    EXPECT_EQ(j["headers"]["Authorization"], "Bearer " + api_key);
    // Keep-alive to the TLS upstream works for a second request too.
    EXPECT_EQ(http_get(proxy.port(), "/api/get", bearer(token)).status, 200u);
}

TEST_F(TlsUpstreamTest, ProxiesToHttpsUpstreamByIpAddress) {
    // The certificate names IP:127.0.0.1, so an IP-literal upstream URL verifies too.
    proxy_process proxy{{.target_url = "https://127.0.0.1:" + std::to_string(httpbin.port()),
                         .redis_url = redis.url(),
                         .env = {{"TARGET_CA_FILE", tls.ca_cert}}}};
    auto token = register_token(proxy.port());
    auto r = http_get(proxy.port(), "/api/get", bearer(token));
    EXPECT_EQ(r.status, 200u) << r.body << "\nproxy log:\n" << proxy.log();
}

TEST_F(TlsUpstreamTest, AnswersWith502WhenUpstreamCertificateIsUntrusted) {
    proxy_process proxy{{.target_url = "https://localhost:" + std::to_string(httpbin.port()),
                         .redis_url = redis.url(),
                         .env = {{"TARGET_API_KEY", api_key}}}};
    auto token = register_token(proxy.port());
    for (int i = 0; i < 2; ++i) {
        auto r = http_get(proxy.port(), "/api/get", bearer(token));
        EXPECT_EQ(r.status, 502u) << r.body;
        EXPECT_NO_THROW(r.json()) << r.body;
        EXPECT_FALSE(contains(r.body, api_key));
        EXPECT_FALSE(contains(r.headers_text(), api_key));
    }
    EXPECT_TRUE(proxy.process().running());
    EXPECT_EQ(http_get(proxy.port(), "/health").status, 200u);
}

}  // namespace
