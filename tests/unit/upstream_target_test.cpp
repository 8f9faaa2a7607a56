#include <gtest/gtest.h>

#include "ratelimit_proxy/proxy/upstream_target.hpp"

using ratelimit_proxy::proxy::map_request_target;
using ratelimit_proxy::proxy::target_error;
using ratelimit_proxy::proxy::upstream_target;

TEST(UpstreamTarget, ParsesHttpsWithDefaultPortAndBasePath) {
    auto t = upstream_target::parse("https://api.openai.com/v1");
    EXPECT_TRUE(t.tls);
    EXPECT_EQ(t.host, "api.openai.com");
    EXPECT_EQ(t.port, "443");
    EXPECT_EQ(t.host_header, "api.openai.com");
    EXPECT_EQ(t.base_path, "/v1");
}

TEST(UpstreamTarget, KeepsExplicitPortInHostHeaderAndDropsTrailingSlash) {
    auto t = upstream_target::parse("http://127.0.0.1:8080/base/");
    EXPECT_FALSE(t.tls);
    EXPECT_EQ(t.port, "8080");
    EXPECT_EQ(t.host_header, "127.0.0.1:8080");
    EXPECT_EQ(t.base_path, "/base");
}

TEST(UpstreamTarget, UnbracketsIpv6Hosts) {
    auto t = upstream_target::parse("http://[::1]:9000");
    EXPECT_EQ(t.host, "::1");
    EXPECT_EQ(t.host_header, "[::1]:9000");
}

TEST(UpstreamTarget, RejectsOtherSchemes) {
    EXPECT_THROW(upstream_target::parse("ftp://x"), std::invalid_argument);
}

class RequestTargetMapping : public ::testing::Test {
  protected:
    std::string map(std::string_view target, target_error expected = target_error::none) {
        std::string out;
        EXPECT_EQ(map_request_target(target, "/api", upstream_, out), expected) << target;
        return out;
    }
    upstream_target upstream_ = upstream_target::parse("https://api.openai.com/v1");
};

TEST_F(RequestTargetMapping, AppendsThePathAfterThePrefixToTheBasePath) {
    EXPECT_EQ(map("/api/models"), "/v1/models");
    EXPECT_EQ(map("/api/chat/completions"), "/v1/chat/completions");
}

TEST_F(RequestTargetMapping, KeepsTheQueryStringAsIs) {
    EXPECT_EQ(map("/api/models?limit=5&after=a%20b"), "/v1/models?limit=5&after=a%20b");
    EXPECT_EQ(map("/api?x=1"), "/v1?x=1");
}

TEST_F(RequestTargetMapping, PrefixAloneMapsToTheBase) {
    EXPECT_EQ(map("/api"), "/v1");
    EXPECT_EQ(map("/api/"), "/v1/");
}

TEST_F(RequestTargetMapping, RootBaseGivesAnOriginFormTarget) {
    upstream_ = upstream_target::parse("http://127.0.0.1:8080");
    EXPECT_EQ(map("/api"), "/");
    EXPECT_EQ(map("/api/get?a=1"), "/get?a=1");
}

TEST_F(RequestTargetMapping, PathsOutsideThePrefixAreNotMapped) {
    map("/apix/models", target_error::not_under_prefix);
    map("/other", target_error::not_under_prefix);
}

TEST_F(RequestTargetMapping, RejectsDotSegmentsPlainAndEncoded) {
    map("/api/../admin", target_error::bad_target);
    map("/api/a/./b", target_error::bad_target);
    map("/api/%2e%2e/admin", target_error::bad_target);
    map("/api/%2E./x", target_error::bad_target);
    map("/api/a/%2e%2e%2f%2e%2e/x", target_error::bad_target);
    map("/api/a%5c..%5cx", target_error::bad_target);
    map("/api/..", target_error::bad_target);
    EXPECT_EQ(map("/api/a..b/.well-known"), "/v1/a..b/.well-known");
}

TEST_F(RequestTargetMapping, RejectsAbsoluteFormAndControlCharacters) {
    map("http://evil.example/api/x", target_error::bad_target);
    map("*", target_error::bad_target);
    map("/api/a b", target_error::bad_target);
}
