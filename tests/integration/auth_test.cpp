// Authentication of /api requests with the bearer token from /register.
#include <gtest/gtest.h>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;

namespace {

class AuthTest : public proxy_fixture<beast_upstream> {
  protected:
    void SetUp() override { start_proxy({.base_path = "/v1"}); }

    void expect_401(const http_response& r) {
        EXPECT_EQ(r.status, 401u) << r.body;
        EXPECT_TRUE(r.header("WWW-Authenticate").rfind("Bearer", 0) == 0)
            << "WWW-Authenticate: " << r.header("WWW-Authenticate");
        EXPECT_TRUE(r.header("Content-Type").rfind("application/json", 0) == 0)
            << r.header("Content-Type");
        EXPECT_NO_THROW(r.json()) << r.body;
        EXPECT_EQ(upstream.request_count(), 0u);
    }
};

TEST_F(AuthTest, RejectsRequestWithoutTokenWith401) {
    expect_401(http_get(proxy->port(), "/api/echo"));
}

TEST_F(AuthTest, RejectsUnknownTokenWith401) {
    expect_401(http_get(proxy->port(), "/api/echo", bearer("rlp_" + random_hex(32))));
}

TEST_F(AuthTest, RejectsNonBearerSchemeWith401) {
    auto token = register_token(proxy->port());
    expect_401(http_get(proxy->port(), "/api/echo", {{"Authorization", "Basic " + token}}));
}

TEST_F(AuthTest, RejectsEmptyBearerWith401) {
    expect_401(http_get(proxy->port(), "/api/echo", {{"Authorization", "Bearer "}}));
}

TEST_F(AuthTest, RejectsTruncatedTokenWith401) {
    auto token = register_token(proxy->port());
    expect_401(http_get(proxy->port(), "/api/echo", bearer(token.substr(0, token.size() - 1))));
}

TEST_F(AuthTest, AcceptsRegisteredToken) {
    auto token = register_token(proxy->port());
    auto r = http_get(proxy->port(), "/api/echo", bearer(token));
    EXPECT_EQ(r.status, 200u) << r.body;
    ASSERT_EQ(upstream.request_count(), 1u);
    EXPECT_EQ(upstream.requests()[0].target, "/v1/echo");
}

TEST_F(AuthTest, AcceptsBearerSchemeCaseInsensitively) {
    // Authentication schemes are case-insensitive (RFC 9110 11.1); some clients send "bearer".
    auto token = register_token(proxy->port());
    auto r = http_get(proxy->port(), "/api/echo", {{"Authorization", "bearer " + token}});
    EXPECT_EQ(r.status, 200u) << r.body;
}

TEST_F(AuthTest, ProxiesOnlyUnderTheApiPrefixSegment) {
    // "/apiary" is not "/api/...": nothing goes upstream.
    auto token = register_token(proxy->port());
    auto r = http_get(proxy->port(), "/apiary/echo", bearer(token));
    EXPECT_GE(r.status, 400u);
    EXPECT_LT(r.status, 500u);
    EXPECT_EQ(upstream.request_count(), 0u);
}

}  // namespace
