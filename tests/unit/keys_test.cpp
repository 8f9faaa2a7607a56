// The exact text of every Redis key the proxy writes: deployed data and the Lua scripts
// depend on it, hash tags included.
#include <gtest/gtest.h>

#include <string>

#include "ratelimit_proxy/limit/keys.hpp"
#include "ratelimit_proxy/limit/policy.hpp"

namespace limit = ratelimit_proxy::limit;

namespace {
const std::string digest_hex = "3f2a9c0d1e4b5a6f" + std::string(48, 'a');
}

TEST(KeySchema, BucketKeyIsTaggedByThePrefix) {
    EXPECT_EQ(limit::bucket_key("rlp", "daily", "3f2a9c0d1e4b5a6f"),
              "{rlp}:rl:daily:3f2a9c0d1e4b5a6f");
    EXPECT_EQ(limit::bucket_key("rlp", "register", "10.0.0.7"), "{rlp}:rl:register:10.0.0.7");
}

TEST(KeySchema, AssignedBucketKeyEqualsTheBuiltOneAndReusesItsBuffer) {
    std::string key;
    key.reserve(128);
    const auto* data = key.data();
    limit::assign_bucket_key(key, "rlp", "chat", limit::key_kind::token_route, "3f2a9c0d1e4b5a6f",
                             "1.2.3.4", "POST", "/api/ch%61t?x=1");
    EXPECT_EQ(key, "{rlp}:rl:chat:3f2a9c0d1e4b5a6f POST /api/chat");
    EXPECT_EQ(key.data(), data);
    limit::assign_bucket_key(key, "rlp", "all", limit::key_kind::global, "", "", "GET", "/");
    EXPECT_EQ(key, limit::bucket_key("rlp", "all", "global"));
    EXPECT_EQ(key.data(), data);
}

TEST(KeySchema, TokenKeyIsTaggedByTheDigest) {
    EXPECT_EQ(limit::token_key("rlp", digest_hex), "rlp:token:{" + digest_hex + "}");
    EXPECT_EQ(limit::token_key_head("rlp"), "rlp:token:");
}

TEST(KeySchema, TokenIdComesBackFromATokenKeyOnly) {
    EXPECT_EQ(limit::token_id_of_key(limit::token_key("rlp", digest_hex), "rlp"),
              "3f2a9c0d1e4b5a6f");
    EXPECT_EQ(limit::token_id_of_key(limit::token_key("other", digest_hex), "rlp"), "");
    EXPECT_EQ(limit::token_id_of_key("rlp:token:{" + digest_hex.substr(1) + "}", "rlp"), "");
    EXPECT_EQ(limit::token_id_of_key("rlp:token:{" + std::string(64, 'A') + "}", "rlp"), "");
}

TEST(KeySchema, TokenScanPatternsEscapeThePrefix) {
    EXPECT_EQ(limit::token_scan_pattern("rlp"), "rlp:token:[{]*");
    EXPECT_EQ(limit::token_scan_pattern("a*b[c]", "3f2a9c0d1e4b5a6f"),
              "a\\*b\\[c\\]:token:[{]3f2a9c0d1e4b5a6f*");
}

TEST(KeySchema, AdminKeysShareThePrefixTag) {
    EXPECT_EQ(limit::admin_state_key("rlp"), "{rlp}:admin:state");
    EXPECT_EQ(limit::admin_version_key("rlp"), "{rlp}:admin:version");
}
