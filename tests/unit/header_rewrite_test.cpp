#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ratelimit_proxy/proxy/header_rewrite.hpp"

namespace proxy = ratelimit_proxy::proxy;
namespace http = boost::beast::http;

class HeaderRewrite : public ::testing::Test {
  protected:
    proxy::request_rewrite rewrite_{"api.example.com", "Authorization", "Bearer sk-upstream"};
    http::fields f_;
};

TEST_F(HeaderRewrite, StripsStandardHopByHopHeaders) {
    f_.set(http::field::connection, "keep-alive");
    f_.set(http::field::keep_alive, "timeout=5");
    f_.set("Proxy-Connection", "keep-alive");
    f_.set(http::field::te, "trailers");
    f_.set(http::field::trailer, "X-Checksum");
    f_.set(http::field::transfer_encoding, "chunked");
    f_.set(http::field::upgrade, "websocket");
    f_.set(http::field::proxy_authorization, "Basic abc");
    f_.set(http::field::proxy_authenticate, "Basic");
    f_.set("X-Kept", "1");
    proxy::strip_hop_by_hop(f_);
    EXPECT_EQ(std::distance(f_.begin(), f_.end()), 1);
    EXPECT_EQ(f_["X-Kept"], "1");
}

TEST_F(HeaderRewrite, StripsEveryHeaderNamedInConnection) {
    f_.insert(http::field::connection, "close, X-Secret-Hop");
    f_.insert(http::field::connection, " x-other ,  ");
    f_.set("X-Secret-Hop", "1");
    f_.set("X-Other", "2");
    f_.set("X-Kept", "3");
    proxy::strip_hop_by_hop(f_);
    EXPECT_EQ(f_.count("X-Secret-Hop"), 0u);
    EXPECT_EQ(f_.count("X-Other"), 0u);
    EXPECT_EQ(f_.count(http::field::connection), 0u);
    EXPECT_EQ(f_["X-Kept"], "3");
}

TEST_F(HeaderRewrite, ConnectionNamingItselfStillStripsTheNamesAfterIt) {
    // The names are views into the Connection values: Connection must outlive their use.
    f_.insert(http::field::connection, "Connection, X-After-Self, CONNECTION");
    f_.insert(http::field::connection, "X-Second");
    f_.set("X-After-Self", "1");
    f_.set("X-Second", "2");
    f_.set("X-Kept", "3");
    proxy::strip_hop_by_hop(f_);
    EXPECT_EQ(f_.count("X-After-Self"), 0u);
    EXPECT_EQ(f_.count("X-Second"), 0u);
    EXPECT_EQ(f_.count(http::field::connection), 0u);
    EXPECT_EQ(f_["X-Kept"], "3");
}

TEST_F(HeaderRewrite, ReplacesTheClientTokenWithTheUpstreamKey) {
    f_.set(http::field::authorization, "Bearer rlp_clienttoken");
    proxy::rewrite_request(f_, rewrite_, "10.1.2.3");
    EXPECT_EQ(f_[http::field::authorization], "Bearer sk-upstream");
    EXPECT_EQ(f_.count(http::field::authorization), 1u);
}

TEST_F(HeaderRewrite, RemovesTheClientTokenWhenNoKeyIsConfigured) {
    rewrite_.key_value.clear();
    f_.set(http::field::authorization, "Bearer rlp_clienttoken");
    proxy::rewrite_request(f_, rewrite_, "10.1.2.3");
    EXPECT_EQ(f_.count(http::field::authorization), 0u);
}

TEST_F(HeaderRewrite, CustomKeyHeaderReplacesAClientSuppliedCopy) {
    rewrite_.key_header = "x-api-key";
    rewrite_.key_value = "sk-upstream";
    f_.set(http::field::authorization, "Bearer rlp_clienttoken");
    f_.insert("X-Api-Key", "client-forged");
    f_.insert("x-api-key", "client-forged-2");
    proxy::rewrite_request(f_, rewrite_, "10.1.2.3");
    EXPECT_EQ(f_.count("x-api-key"), 1u);
    EXPECT_EQ(f_["x-api-key"], "sk-upstream");
    EXPECT_EQ(f_.count(http::field::authorization), 0u);
}

TEST_F(HeaderRewrite, SetsHostAndForwardingHeaders) {
    f_.set(http::field::host, "127.0.0.1:3000");
    proxy::rewrite_request(f_, rewrite_, "10.1.2.3");
    EXPECT_EQ(f_[http::field::host], "api.example.com");
    EXPECT_EQ(f_["X-Forwarded-For"], "10.1.2.3");
    EXPECT_EQ(f_["X-Forwarded-Proto"], "http");
}

TEST_F(HeaderRewrite, AppendsToAnExistingForwardedForChain) {
    f_.insert("X-Forwarded-For", "1.1.1.1");
    f_.insert("X-Forwarded-For", "2.2.2.2, 3.3.3.3");
    proxy::rewrite_request(f_, rewrite_, "10.1.2.3");
    EXPECT_EQ(f_.count("X-Forwarded-For"), 1u);
    EXPECT_EQ(f_["X-Forwarded-For"], "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3");
}

TEST_F(HeaderRewrite, ResponseKeepsEndToEndHeadersUntouched) {
    f_.set("x-ratelimit-limit-requests", "5000");
    f_.set("x-ratelimit-remaining-tokens", "39000");
    f_.set(http::field::content_type, "application/json");
    f_.set(http::field::connection, "X-Up-Hop");
    f_.set("X-Up-Hop", "1");
    proxy::rewrite_response(f_);
    EXPECT_EQ(f_["x-ratelimit-limit-requests"], "5000");
    EXPECT_EQ(f_["x-ratelimit-remaining-tokens"], "39000");
    EXPECT_EQ(f_[http::field::content_type], "application/json");
    EXPECT_EQ(f_.count("X-Up-Hop"), 0u);
}

TEST_F(HeaderRewrite, ResponseDropsEveryCopyOfTheFieldsTheProxyReplaces) {
    f_.insert("X-RateLimit-Limit", "7");
    f_.insert(http::field::content_type, "text/plain");
    f_.insert("x-ratelimit-limit", "8");
    f_.insert(http::field::keep_alive, "timeout=5");
    f_.insert(http::field::keep_alive, "max=100");
    f_.insert(http::field::retry_after, "30");
    f_.insert("X-RateLimit-Remaining", "3");
    const std::string_view replaced[] = {"X-RateLimit-Limit", "RateLimit"};
    proxy::rewrite_response(f_, replaced);
    EXPECT_EQ(f_.count("X-RateLimit-Limit"), 0u);
    EXPECT_EQ(f_.count(http::field::keep_alive), 0u);
    // Not named: the upstream's stay, in their order.
    std::vector<std::string> left;
    for (const auto& f : f_)
        left.emplace_back(f.name_string());
    EXPECT_EQ(left,
              (std::vector<std::string>{"Content-Type", "Retry-After", "X-RateLimit-Remaining"}));
}

TEST_F(HeaderRewrite, RequestDropsEveryCopyOfTheClientCredentialsAndForwardingFields) {
    f_.insert(http::field::authorization, "Bearer rlp_client");
    f_.insert("X-Forwarded-Proto", "https");
    f_.insert(http::field::host, "proxy.local");
    f_.insert(http::field::authorization, "Bearer second");
    f_.insert("x-forwarded-proto", "ftp");
    f_.insert(http::field::accept, "*/*");
    proxy::rewrite_request(f_, rewrite_, "10.1.2.3");
    EXPECT_EQ(f_.count(http::field::authorization), 1u);
    EXPECT_EQ(f_[http::field::authorization], "Bearer sk-upstream");
    EXPECT_EQ(f_.count(http::field::host), 1u);
    EXPECT_EQ(f_[http::field::host], "api.example.com");
    EXPECT_EQ(f_.count("X-Forwarded-Proto"), 1u);
    EXPECT_EQ(f_["X-Forwarded-Proto"], "http");
    EXPECT_EQ(f_[http::field::accept], "*/*");
}

TEST_F(HeaderRewrite, ForwardedForFieldsJoinInTheirOrderAmongOtherFields) {
    f_.insert("X-Forwarded-For", "1.1.1.1");
    f_.insert(http::field::accept, "*/*");
    f_.insert("x-forwarded-for", "2.2.2.2, 3.3.3.3");
    proxy::rewrite_request(f_, rewrite_, "10.1.2.3");
    EXPECT_EQ(f_.count("X-Forwarded-For"), 1u);
    EXPECT_EQ(f_["X-Forwarded-For"], "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3");
}

TEST_F(HeaderRewrite, ForwardedForNamedInConnectionIsDroppedNotForwarded) {
    f_.insert(http::field::connection, "X-Forwarded-For");
    f_.insert("X-Forwarded-For", "6.6.6.6");
    proxy::rewrite_request(f_, rewrite_, "10.1.2.3");
    EXPECT_EQ(f_["X-Forwarded-For"], "10.1.2.3");
    EXPECT_EQ(f_.count(http::field::connection), 0u);
}
