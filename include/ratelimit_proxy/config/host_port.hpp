#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace ratelimit_proxy::config {

// A listen address as configured (BIND_ADDRESS, ADMIN_BIND_ADDRESS).
struct host_port {
    std::string host;  // an IPv6 literal without its brackets
    std::uint16_t port = 0;

    bool operator==(const host_port&) const = default;
};

// "host:port" or "[IPv6]:port" (an unbracketed IPv6 literal works too: the port follows the
// last colon). The host is not empty, the port 0-65535 in decimal digits. Throws
// std::invalid_argument: `expected host:port, got "..."` or `invalid port in "..."`.
host_port parse_host_port(std::string_view text);

// The endpoint to listen on: "localhost" is 127.0.0.1, "*" every IPv4 interface, anything
// else must be an IP address (names are not resolved). Throws std::invalid_argument.
boost::asio::ip::tcp::endpoint listen_endpoint(const host_port& address);

}  // namespace ratelimit_proxy::config
