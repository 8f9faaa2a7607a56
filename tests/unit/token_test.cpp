#include <gtest/gtest.h>

#include <set>

#include "ratelimit_proxy/auth/token.hpp"

namespace auth = ratelimit_proxy::auth;

TEST(Token, IsPrefixedUrlSafeAndCarries256Bits) {
    auto t = auth::generate_token();
    EXPECT_EQ(t.rfind("rlp_", 0), 0u);
    EXPECT_EQ(t.size(), 4u + 43u);
    EXPECT_EQ(t.find_first_not_of(
                  "rlp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 4),
              std::string::npos);
    EXPECT_TRUE(auth::looks_like_token(t));
}

TEST(Token, TokensDoNotRepeat) {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i)
        seen.insert(auth::generate_token());
    EXPECT_EQ(seen.size(), 1000u);
}

TEST(Token, Sha256MatchesAKnownVector) {
    EXPECT_EQ(auth::to_hex(auth::sha256("abc")),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Token, DigestComparisonTellsEqualFromDifferent) {
    auto a = auth::sha256("one");
    auto b = auth::sha256("one");
    auto c = auth::sha256("two");
    EXPECT_TRUE(auth::digests_equal(a, b));
    EXPECT_FALSE(auth::digests_equal(a, c));
    c = a;
    c[31] ^= 1;
    EXPECT_FALSE(auth::digests_equal(a, c));
}

TEST(Token, BearerCredentialIsParsedCaseInsensitively) {
    EXPECT_EQ(auth::bearer_token("Bearer abc").value_or(""), "abc");
    EXPECT_EQ(auth::bearer_token("bearer   abc  ").value_or(""), "abc");
    EXPECT_EQ(auth::bearer_token("BEARER abc").value_or(""), "abc");
}

TEST(Token, MalformedAuthorizationValuesAreRejected) {
    EXPECT_FALSE(auth::bearer_token(""));
    EXPECT_FALSE(auth::bearer_token("Bearer"));
    EXPECT_FALSE(auth::bearer_token("Bearer "));
    EXPECT_FALSE(auth::bearer_token("Basic dXNlcjpwdw=="));
    EXPECT_FALSE(auth::bearer_token("Bearerabc"));
    EXPECT_FALSE(auth::bearer_token("Bearer a b"));
    EXPECT_FALSE(auth::bearer_token("Bearer a,b"));
    EXPECT_FALSE(auth::bearer_token("Bearer a\tb"));
}

TEST(Token, ShapeCheckRejectsForeignStrings) {
    EXPECT_FALSE(auth::looks_like_token("sk-abc"));
    EXPECT_FALSE(auth::looks_like_token("rlp_short"));
    auto t = auth::generate_token();
    t[10] = '+';
    EXPECT_FALSE(auth::looks_like_token(t));
}
