#pragma once

#include <boost/asio/ip/address.hpp>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ratelimit_proxy::proxy {

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

// The client's address for per-IP limits and access lists: the peer, unless the peer is a
// trusted proxy; then X-Forwarded-For is walked from the right, skipping trusted addresses,
// and the first untrusted one is the client (the leftmost if all are trusted). A malformed
// entry stops the walk at the last good address. `forwarded_for` is every X-Forwarded-For
// value joined with ",".
boost::asio::ip::address resolve_client_address(const boost::asio::ip::address& peer,
                                                std::string_view forwarded_for,
                                                const cidr_set& trusted);

}  // namespace ratelimit_proxy::proxy
