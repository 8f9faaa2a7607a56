#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "ratelimit_proxy/config/host_port.hpp"

namespace config = ratelimit_proxy::config;

namespace {

std::string error_of(std::string_view text) {
    try {
        config::parse_host_port(text);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(HostPort, SplitsHostAndPort) {
    EXPECT_EQ(config::parse_host_port("127.0.0.1:3000"), (config::host_port{"127.0.0.1", 3000}));
    EXPECT_EQ(config::parse_host_port("0.0.0.0:0"), (config::host_port{"0.0.0.0", 0}));
    EXPECT_EQ(config::parse_host_port("localhost:65535"), (config::host_port{"localhost", 65535}));
    EXPECT_EQ(config::parse_host_port("*:80"), (config::host_port{"*", 80}));
}

TEST(HostPort, TakesIpv6WithOrWithoutBrackets) {
    EXPECT_EQ(config::parse_host_port("[::1]:3000"), (config::host_port{"::1", 3000}));
    EXPECT_EQ(config::parse_host_port("[::]:3000"), (config::host_port{"::", 3000}));
    // The port follows the last colon.
    EXPECT_EQ(config::parse_host_port("::1:3000"), (config::host_port{"::1", 3000}));
}

TEST(HostPort, MissingHostOrPortIsNamedWithTheText) {
    for (const char* bad : {"3000", ":3000", "host:", "", ":", "[::1:3000", "::1]:3000", "[]:3000"})
        EXPECT_EQ(error_of(bad), "expected host:port, got \"" + std::string(bad) + "\"") << bad;
}

TEST(HostPort, PortsOutsideTheRangeOrNotDigitsAreRejectedNotThrownByStoul) {
    for (const char* bad : {"h:65536", "h:99999", "h:123456", "h:99999999999999999999", "h:abc",
                            "h:-1", "h:+1", "h: 1", "h:1 ", "h:0x10"})
        EXPECT_EQ(error_of(bad), "invalid port in \"" + std::string(bad) + "\"") << bad;
}

TEST(HostPort, ListenEndpointMapsLocalhostAndStar) {
    auto e = config::listen_endpoint({"localhost", 3000});
    EXPECT_EQ(e.address().to_string(), "127.0.0.1");
    EXPECT_EQ(e.port(), 3000);
    EXPECT_EQ(config::listen_endpoint({"*", 1}).address().to_string(), "0.0.0.0");
    EXPECT_EQ(config::listen_endpoint({"::1", 2}).address().to_string(), "::1");
    EXPECT_EQ(config::listen_endpoint({"10.1.2.3", 0}).address().to_string(), "10.1.2.3");
}

TEST(HostPort, ListenEndpointRefusesNamesItWouldHaveToResolve) {
    EXPECT_THROW(config::listen_endpoint({"example.com", 80}), std::invalid_argument);
    EXPECT_THROW(config::listen_endpoint({"", 80}), std::invalid_argument);
}
