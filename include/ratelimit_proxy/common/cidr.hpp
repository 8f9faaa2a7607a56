#pragma once

#include <boost/asio/ip/address.hpp>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ratelimit_proxy::common {

// IPv4 and IPv6 networks ("10.0.0.0/8", "2001:db8::/32", or a bare address). An IPv4-mapped
// IPv6 address ("::ffff:10.1.2.3") matches the IPv4 networks.
class cidr_set {
  public:
    // Throws std::invalid_argument with a message saying what is wrong with `text`.
    void add(std::string_view text);
    bool contains(const boost::asio::ip::address& a) const;
    bool empty() const { return networks_.empty(); }

  private:
    struct network {
        bool v6 = false;
        std::array<unsigned char, 16> bytes{};
        unsigned prefix = 0;
    };
    std::vector<network> networks_;
};

// "::ffff:10.1.2.3" is the IPv4 address 10.1.2.3 (a dual-stack listener reports it so);
// any other address is returned as it is.
boost::asio::ip::address unmapped(const boost::asio::ip::address& a);

// The address in `text`, or nothing if it is not one.
std::optional<boost::asio::ip::address> parse_address(std::string_view text);

}  // namespace ratelimit_proxy::common
