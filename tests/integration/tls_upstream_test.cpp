// HTTPS upstreams: verification against the system store plus TARGET_CA_FILE.
#include <gtest/gtest.h>

#include <utility>

#include "httpbin_server.hpp"
#include "proxy_fixture.hpp"
#include "proxy_process.hpp"
#include "test_helpers.hpp"
#include "tls_material.hpp"

using namespace rlp_test;

namespace {

// A base class of TlsUpstreamTest, so that the certificates exist before its httpbin starts.
struct generated_tls {
    tls_material tls = tls_material::generate();
};

class TlsUpstreamTest : protected generated_tls, public proxy_fixture<httpbin_server> {
  protected:
    TlsUpstreamTest()
        : proxy_fixture(std::in_place, httpbin_server::tls_files{tls.server_cert, tls.server_key}) {
    }

    const std::string api_key = "sk-tls-" + random_hex(12);
};

TEST_F(TlsUpstreamTest, ProxiesToHttpsUpstreamTrustedThroughCaFile) {
    start_proxy({.env = {{"TARGET_CA_FILE", tls.ca_cert}, {"TARGET_API_KEY", api_key}},
                 .register_token = true});
    auto r = http_get(port(), "/api/get?via=tls", bearer(token));
    ASSERT_EQ(r.status, 200u) << r.body << "\nproxy log:\n" << proxy->log();
    auto j = r.json();
    EXPECT_EQ(j["args"]["via"], "tls");
    EXPECT_EQ(j["headers"]["Host"], "localhost:" + std::to_string(upstream.port()));
    EXPECT_EQ(j["headers"]["Authorization"], "Bearer " + api_key);
    // Keep-alive to the TLS upstream works for a second request too.
    EXPECT_EQ(http_get(port(), "/api/get", bearer(token)).status, 200u);
}

TEST_F(TlsUpstreamTest, ProxiesToHttpsUpstreamByIpAddress) {
    // The certificate names IP:127.0.0.1, so an IP-literal upstream URL verifies too.
    start_proxy({.target_url = "https://127.0.0.1:" + std::to_string(upstream.port()),
                 .env = {{"TARGET_CA_FILE", tls.ca_cert}},
                 .register_token = true});
    auto r = http_get(port(), "/api/get", bearer(token));
    EXPECT_EQ(r.status, 200u) << r.body << "\nproxy log:\n" << proxy->log();
}

TEST_F(TlsUpstreamTest, AnswersWith502WhenUpstreamCertificateIsUntrusted) {
    start_proxy({.env = {{"TARGET_API_KEY", api_key}}, .register_token = true});
    for (int i = 0; i < 2; ++i) {
        auto r = http_get(port(), "/api/get", bearer(token));
        EXPECT_EQ(r.status, 502u) << r.body;
        EXPECT_NO_THROW(r.json()) << r.body;
        EXPECT_FALSE(contains(r.body, api_key));
        EXPECT_FALSE(contains(r.headers_text(), api_key));
    }
    EXPECT_TRUE(proxy->process().running());
    EXPECT_EQ(http_get(port(), "/health").status, 200u);
}

}  // namespace
