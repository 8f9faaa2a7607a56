#include <gtest/gtest.h>

#include <boost/asio/ip/address.hpp>

#include <stdexcept>

#include "cidr_sets.hpp"
#include "ratelimit_proxy/common/cidr.hpp"

namespace common = ratelimit_proxy::common;
using boost::asio::ip::make_address;

namespace {

class CidrTest : public ::testing::Test {
  protected:
    static common::cidr_set set_of(std::initializer_list<const char*> cidrs) {
        return rlp_test::cidr_set_of(cidrs);
    }
};

}  // namespace

TEST_F(CidrTest, MatchesAddressesInsideTheNetworkOnly) {
    auto s = set_of({"10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"});
    EXPECT_TRUE(s.contains(make_address("10.255.1.2")));
    EXPECT_TRUE(s.contains(make_address("192.168.1.77")));
    EXPECT_FALSE(s.contains(make_address("192.168.2.1")));
    EXPECT_FALSE(s.contains(make_address("11.0.0.1")));
    EXPECT_TRUE(s.contains(make_address("2001:db8:ffff::1")));
    EXPECT_FALSE(s.contains(make_address("2001:db9::1")));
}

TEST_F(CidrTest, PrefixesThatAreNotWholeBytesCompareTheRightBits) {
    auto s = set_of({"172.16.0.0/12"});
    EXPECT_TRUE(s.contains(make_address("172.16.0.1")));
    EXPECT_TRUE(s.contains(make_address("172.31.255.255")));
    EXPECT_FALSE(s.contains(make_address("172.32.0.0")));
    EXPECT_FALSE(s.contains(make_address("172.15.255.255")));
}

TEST_F(CidrTest, BareAddressIsASingleHostAndSlashZeroIsEverything) {
    auto host = set_of({"203.0.113.9", "::1"});
    EXPECT_TRUE(host.contains(make_address("203.0.113.9")));
    EXPECT_FALSE(host.contains(make_address("203.0.113.10")));
    EXPECT_TRUE(host.contains(make_address("::1")));
    auto all = set_of({"0.0.0.0/0"});
    EXPECT_TRUE(all.contains(make_address("8.8.8.8")));
    EXPECT_FALSE(all.contains(make_address("2001:db8::1")));  // IPv4 networks hold no IPv6
}

TEST_F(CidrTest, HostBitsAreMaskedNotRejected) {
    auto s = set_of({"10.1.2.3/8"});
    EXPECT_TRUE(s.contains(make_address("10.200.0.1")));
}

TEST_F(CidrTest, Ipv4MappedIpv6MatchesIpv4Networks) {
    auto s = set_of({"10.0.0.0/8"});
    EXPECT_TRUE(s.contains(make_address("::ffff:10.1.2.3")));
    EXPECT_FALSE(s.contains(make_address("::ffff:11.1.2.3")));
    // And a mapped network means the IPv4 one.
    auto mapped = set_of({"::ffff:192.168.0.0/112"});
    EXPECT_TRUE(mapped.contains(make_address("192.168.4.5")));
    EXPECT_FALSE(mapped.contains(make_address("192.169.0.1")));
}

TEST_F(CidrTest, RejectsMalformedNetworksWithTheTextInTheMessage) {
    for (const char* bad : {"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x",
                            "10.0.0/8", "example.com", "10.0.0.0 /8", "/8"}) {
        common::cidr_set s;
        try {
            s.add(bad);
            ADD_FAILURE() << "accepted \"" << bad << "\"";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
        }
        EXPECT_TRUE(s.empty()) << bad;
    }
}
