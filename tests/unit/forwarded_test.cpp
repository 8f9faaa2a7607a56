#include <gtest/gtest.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/fields.hpp>

#include "cidr_sets.hpp"
#include "ratelimit_proxy/proxy/forwarded.hpp"

namespace proxy = ratelimit_proxy::proxy;
namespace common = ratelimit_proxy::common;
namespace http = boost::beast::http;
using boost::asio::ip::make_address;

namespace {

class ForwardedTest : public ::testing::Test {
  protected:
    static common::cidr_set set_of(std::initializer_list<const char*> cidrs) {
        return rlp_test::cidr_set_of(cidrs);
    }
    static std::string resolve(const char* peer, std::string_view xff,
                               const common::cidr_set& trusted) {
        return proxy::resolve_client_address(make_address(peer), xff, trusted).to_string();
    }
};

}  // namespace

TEST_F(ForwardedTest, WithoutTrustedProxiesThePeerIsTheClient) {
    common::cidr_set none;
    EXPECT_EQ(resolve("198.51.100.7", "1.2.3.4", none), "198.51.100.7");
}

TEST_F(ForwardedTest, SpoofedForwardedForFromAnUntrustedPeerIsIgnored) {
    auto trusted = set_of({"10.0.0.0/8"});
    EXPECT_EQ(resolve("198.51.100.7", "1.2.3.4, 10.0.0.1", trusted), "198.51.100.7");
}

TEST_F(ForwardedTest, TrustedPeerVouchesForTheAddressItAppended) {
    auto trusted = set_of({"10.0.0.0/8"});
    EXPECT_EQ(resolve("10.0.0.2", "203.0.113.5", trusted), "203.0.113.5");
    // No header at all: the proxy itself is the client.
    EXPECT_EQ(resolve("10.0.0.2", "", trusted), "10.0.0.2");
}

TEST_F(ForwardedTest, WalksTrustedHopsFromTheRightAndStopsAtTheFirstUntrusted) {
    auto trusted = set_of({"10.0.0.0/8", "2001:db8::/32"});
    // The client claimed 6.6.6.6 itself; 203.0.113.5 is what the first trusted hop saw.
    EXPECT_EQ(resolve("10.0.0.2", "6.6.6.6, 203.0.113.5, 10.1.1.1,2001:db8::9", trusted),
              "203.0.113.5");
}

TEST_F(ForwardedTest, AllHopsTrustedGivesTheLeftmost) {
    auto trusted = set_of({"10.0.0.0/8"});
    EXPECT_EQ(resolve("10.0.0.2", "10.9.9.9, 10.1.1.1", trusted), "10.9.9.9");
}

TEST_F(ForwardedTest, GarbageEntryStopsTheWalkAtTheLastGoodAddress) {
    auto trusted = set_of({"10.0.0.0/8"});
    EXPECT_EQ(resolve("10.0.0.2", "203.0.113.5, unknown", trusted), "10.0.0.2");
    EXPECT_EQ(resolve("10.0.0.2", "203.0.113.5, garbage, 10.1.1.1", trusted), "10.1.1.1");
    EXPECT_EQ(resolve("10.0.0.2", "1.2.3.4:80", trusted), "10.0.0.2");
    // Empty entries (an empty header line joined with ",") carry nothing and are skipped.
    EXPECT_EQ(resolve("10.0.0.2", "203.0.113.5, ,", trusted), "203.0.113.5");
}

TEST_F(ForwardedTest, MappedPeerAndEntriesResolveToPlainIpv4) {
    auto trusted = set_of({"10.0.0.0/8"});
    EXPECT_EQ(resolve("::ffff:10.0.0.2", "::ffff:203.0.113.5", trusted), "203.0.113.5");
    EXPECT_EQ(resolve("::ffff:198.51.100.7", "", common::cidr_set{}), "198.51.100.7");
}

TEST_F(ForwardedTest, FieldsAreJoinedInOrderBeforeTheWalk) {
    auto trusted = set_of({"10.0.0.0/8"});
    http::fields f;
    f.insert("X-Forwarded-For", "6.6.6.6, 203.0.113.5");
    f.insert(http::field::user_agent, "t");
    f.insert("x-forwarded-for", "10.1.1.1");
    EXPECT_EQ(proxy::resolve_client_address(make_address("10.0.0.2"), f, trusted).to_string(),
              "203.0.113.5");
}

TEST_F(ForwardedTest, WithoutTrustedProxiesFieldsAreIgnoredAndThePeerKeptAsIs) {
    http::fields f;
    f.insert("X-Forwarded-For", "203.0.113.5");
    EXPECT_EQ(proxy::resolve_client_address(make_address("::ffff:10.0.0.2"), f, common::cidr_set{})
                  .to_string(),
              "::ffff:10.0.0.2");
}

TEST_F(ForwardedTest, OutboundChainKeepsTheClientsEntriesAndAppendsTheHop) {
    proxy::forwarded_fields forwarded;
    EXPECT_TRUE(forwarded.take("x-forwarded-for", "1.1.1.1"));
    EXPECT_FALSE(forwarded.take("X-Forwarded-Host", "example.com"));
    EXPECT_TRUE(forwarded.take("X-Forwarded-Proto", "https"));
    EXPECT_TRUE(forwarded.take("X-Forwarded-For", "2.2.2.2, 3.3.3.3"));
    http::fields f;
    forwarded.insert(f, "10.1.2.3");
    EXPECT_EQ(f["X-Forwarded-For"], "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3");
    EXPECT_EQ(f["X-Forwarded-Proto"], "http");
}

TEST_F(ForwardedTest, OutboundChainWithoutClientEntriesIsTheHopAlone) {
    proxy::forwarded_fields forwarded;
    http::fields f;
    forwarded.insert(f, "10.1.2.3");
    EXPECT_EQ(f.count("X-Forwarded-For"), 1u);
    EXPECT_EQ(f["X-Forwarded-For"], "10.1.2.3");
}
