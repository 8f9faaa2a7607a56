#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "ratelimit_proxy/redis/endpoint.hpp"

namespace {

using ratelimit_proxy::redis::endpoint;
using ratelimit_proxy::redis::parse_url;

// The what() of the std::invalid_argument parse_url throws, or "" when it does not throw.
std::string error_of(std::string_view url) {
    try {
        parse_url(url);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return {};
}

TEST(RedisUrlTest, UsesDefaultsWhenOnlyHostIsGiven) {
    endpoint ep = parse_url("redis://cache.internal");
    EXPECT_EQ(ep.host, "cache.internal");
    EXPECT_EQ(ep.port, 6379);
    EXPECT_EQ(ep.username, "");
    EXPECT_EQ(ep.password, "");
    EXPECT_EQ(ep.db, 0);
}

TEST(RedisUrlTest, UsesLoopbackWhenHostIsEmpty) {
    endpoint ep = parse_url("redis://");
    EXPECT_EQ(ep.host, "127.0.0.1");
    EXPECT_EQ(ep.port, 6379);
}

TEST(RedisUrlTest, ParsesHostAndPort) {
    endpoint ep = parse_url("redis://10.1.2.3:6380");
    EXPECT_EQ(ep.host, "10.1.2.3");
    EXPECT_EQ(ep.port, 6380);
    EXPECT_EQ(ep.db, 0);
}

TEST(RedisUrlTest, AcceptsUppercaseScheme) {
    EXPECT_EQ(parse_url("REDIS://h:1").port, 1);
}

TEST(RedisUrlTest, StripsBracketsFromIpv6Host) {
    endpoint ep = parse_url("redis://[::1]:7000");
    EXPECT_EQ(ep.host, "::1");
    EXPECT_EQ(ep.port, 7000);
}

TEST(RedisUrlTest, ParsesPasswordWithoutUser) {
    endpoint ep = parse_url("redis://:s3cret@localhost:6379");
    EXPECT_EQ(ep.username, "");
    EXPECT_EQ(ep.password, "s3cret");
    EXPECT_EQ(ep.host, "localhost");
}

TEST(RedisUrlTest, ParsesUserAndPassword) {
    endpoint ep = parse_url("redis://alice:s3cret@localhost");
    EXPECT_EQ(ep.username, "alice");
    EXPECT_EQ(ep.password, "s3cret");
}

TEST(RedisUrlTest, PercentDecodesUserAndPassword) {
    endpoint ep = parse_url("redis://al%20ice:p%40ss%3Aword%2F@localhost");
    EXPECT_EQ(ep.username, "al ice");
    EXPECT_EQ(ep.password, "p@ss:word/");
}

TEST(RedisUrlTest, ParsesDatabase) {
    endpoint ep = parse_url("redis://localhost:6379/3");
    EXPECT_EQ(ep.db, 3);
    EXPECT_EQ(parse_url("redis://localhost/").db, 0);
    EXPECT_EQ(parse_url("redis://localhost/15").db, 15);
}

TEST(RedisUrlTest, ParsesEverythingTogether) {
    endpoint ep = parse_url("redis://bob:pw@127.0.0.1:6390/2");
    EXPECT_EQ(ep.host, "127.0.0.1");
    EXPECT_EQ(ep.port, 6390);
    EXPECT_EQ(ep.username, "bob");
    EXPECT_EQ(ep.password, "pw");
    EXPECT_EQ(ep.db, 2);
}

TEST(RedisUrlTest, RejectsRedissSayingTlsIsNotSupported) {
    std::string what = error_of("rediss://localhost:6380");
    EXPECT_NE(what.find("rediss://"), std::string::npos) << what;
    EXPECT_NE(what.find("not supported"), std::string::npos) << what;
}

TEST(RedisUrlTest, RejectsOtherSchemes) {
    std::string what = error_of("http://localhost:6379");
    EXPECT_NE(what.find("redis://"), std::string::npos) << what;
    EXPECT_NE(what.find("http://"), std::string::npos) << what;
}

TEST(RedisUrlTest, RejectsTextThatIsNoUrl) {
    EXPECT_NE(error_of("127.0.0.1:6379"), "");
    EXPECT_NE(error_of(""), "");
    EXPECT_NE(error_of("redis:localhost"), "");
}

TEST(RedisUrlTest, RejectsBadPort) {
    for (std::string_view url : {"redis://localhost:0", "redis://localhost:65536",
                                 "redis://localhost:99999999999", "redis://localhost:"}) {
        std::string what = error_of(url);
        EXPECT_NE(what.find("port"), std::string::npos) << url << ": " << what;
    }
    EXPECT_NE(error_of("redis://localhost:abc"), "");
}

TEST(RedisUrlTest, RejectsBadDatabase) {
    for (std::string_view url :
         {"redis://localhost/abc", "redis://localhost/-1", "redis://localhost/1/2",
          "redis://localhost/3x", "redis://localhost/99999999999"}) {
        std::string what = error_of(url);
        EXPECT_NE(what.find("database"), std::string::npos) << url << ": " << what;
    }
}

TEST(RedisUrlTest, RejectsCredentialsWithoutColon) {
    EXPECT_NE(error_of("redis://secret@localhost").find("colon"), std::string::npos);
}

TEST(RedisUrlTest, RejectsUserWithoutPassword) {
    EXPECT_NE(error_of("redis://alice:@localhost").find("password"), std::string::npos);
}

TEST(RedisUrlTest, RejectsQueryAndFragment) {
    EXPECT_NE(error_of("redis://localhost?timeout=1"), "");
    EXPECT_NE(error_of("redis://localhost#x"), "");
}

TEST(RedisUrlTest, ErrorMessagesNeverContainThePassword) {
    for (std::string_view url : {"rediss://:hunter2@localhost", "redis://:hunter2@localhost:0",
                                 "redis://u:hunter2@localhost/x", "http://u:hunter2@localhost"}) {
        std::string what = error_of(url);
        ASSERT_NE(what, "") << url;
        EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
    }
}

}  // namespace

namespace {
TEST(RedisUrlTest, RejectsControlCharactersInTheHost) {
    for (const char* url : {"redis://evil%00.example", "redis://a%0Ab:6379", "redis://a%20b"}) {
        std::string what = error_of(url);
        EXPECT_NE(what.find("control character"), std::string::npos) << url << ": " << what;
    }
    EXPECT_EQ(error_of("redis://cache.internal:6379"), "");
}
}  // namespace
