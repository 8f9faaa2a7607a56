// POST /register: token issue and storage.
#include <gtest/gtest.h>

#include <openssl/evp.h>

#include <cctype>
#include <regex>
#include <set>

#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
namespace http = boost::beast::http;

namespace {

std::string base64_of_hex(const std::string& hex) {
    std::string raw;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        raw.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(raw.data()),
                            static_cast<int>(raw.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

class RegisterTest : public proxy_fixture<beast_upstream> {
  protected:
    void SetUp() override { start_proxy(); }
};

TEST_F(RegisterTest, AnswersCreatedWithCompactTokenJson) {
    auto r = http_request(proxy->port(), http::verb::post, "/register");
    EXPECT_EQ(r.status, 201u) << r.body;
    EXPECT_TRUE(r.header("Content-Type").rfind("application/json", 0) == 0)
        << r.header("Content-Type");
    std::smatch m;
    const std::regex shape(R"re(\{"token":"(rlp_[A-Za-z0-9_\-]+)"\})re");
    ASSERT_TRUE(std::regex_match(r.body, m, shape)) << "body: " << r.body;
    // 32 random bytes encoded take at least 43 characters (base64url) or 64 (hex).
    EXPECT_GE(m[1].length(), 4 + 43) << m[1];
    EXPECT_EQ(upstream.request_count(), 0u);
}

TEST_F(RegisterTest, IssuesDistinctTokens) {
    std::set<std::string> tokens;
    for (int i = 0; i < 20; ++i)
        tokens.insert(register_token(proxy->port()));
    EXPECT_EQ(tokens.size(), 20u);
}

TEST_F(RegisterTest, IssuedTokenIsAcceptedOnApi) {
    auto token = register_token(proxy->port());
    auto r = http_get(proxy->port(), "/api/echo", bearer(token));
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(upstream.request_count(), 1u);
}

TEST_F(RegisterTest, StoresNoRawTokenInRedis) {
    std::size_t keys_before = 0;
    dump_redis(redis, &keys_before);
    auto token = register_token(proxy->port());
    // Use it too, so the rate-limit state for this token exists as well.
    ASSERT_EQ(http_get(proxy->port(), "/api/echo", bearer(token)).status, 200u);

    std::size_t keys_after = 0;
    std::string dump = dump_redis(redis, &keys_after);
    ASSERT_GT(keys_after, keys_before) << "registering stored nothing in Redis?\n" << dump;
    std::string secret_part = token.substr(token.find('_') + 1);
    ASSERT_GE(secret_part.size(), 16u);
    EXPECT_FALSE(contains(dump, token)) << dump;
    EXPECT_FALSE(contains(dump, secret_part)) << dump;
    // Not even a recognisable part of it.
    EXPECT_FALSE(contains(dump, secret_part.substr(0, 16))) << dump;
    // What is stored is the SHA-256 digest (in some text encoding).
    std::string hex = sha256_hex(token);
    std::string upper = hex;
    for (auto& ch : upper)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    std::string b64 = base64_of_hex(hex);
    std::string b64url = b64;
    for (auto& ch : b64url)
        ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
    while (!b64url.empty() && b64url.back() == '=')
        b64url.pop_back();
    EXPECT_TRUE(contains(dump, hex) || contains(dump, upper) || contains(dump, b64) ||
                contains(dump, b64url))
        << "no SHA-256 of the token in Redis (sha256 hex " << hex << "):\n"
        << dump;
}

TEST_F(RegisterTest, StoresTokenHashThatAnotherInstanceCanFind) {
    // The digest is what is stored: a second instance (fresh cache) accepts the token.
    auto token = register_token(proxy->port());
    proxy_process other{proxy_options_for({})};
    auto r = http_get(other.port(), "/api/echo", bearer(token));
    EXPECT_EQ(r.status, 200u) << r.body;
}

}  // namespace
