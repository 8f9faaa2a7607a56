#include "ratelimit_proxy/common/cidr.hpp"

#include <boost/asio/ip/address.hpp>

#include <stdexcept>

namespace ratelimit_proxy::common {

namespace ip = boost::asio::ip;

ip::address unmapped(const ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped())
        return ip::make_address_v4(ip::v4_mapped, a.to_v6());
    return a;
}

std::optional<ip::address> parse_address(std::string_view text) {
    boost::system::error_code ec;
    auto a = ip::make_address(std::string(text), ec);
    if (ec)
        return std::nullopt;
    return a;
}

void cidr_set::add(std::string_view text) {
    auto slash = text.find('/');
    auto address_text = text.substr(0, slash);
    auto parsed = parse_address(address_text);
    if (!parsed)
        throw std::invalid_argument("\"" + std::string(text) + "\" is not an IP address or CIDR");
    ip::address a = *parsed;
    network n;
    n.v6 = a.is_v6();
    const unsigned max_prefix = n.v6 ? 128 : 32;
    n.prefix = max_prefix;
    if (slash != std::string_view::npos) {
        auto len = text.substr(slash + 1);
        if (len.empty() || len.size() > 3 || len.find_first_not_of("0123456789") != len.npos)
            throw std::invalid_argument("\"" + std::string(text) +
                                        "\": the prefix length after / must be a number");
        n.prefix = static_cast<unsigned>(std::stoul(std::string(len)));
        if (n.prefix > max_prefix)
            throw std::invalid_argument("\"" + std::string(text) + "\": prefix length " +
                                        std::to_string(n.prefix) + " is out of range (0-" +
                                        std::to_string(max_prefix) + ")");
    }
    // An IPv4-mapped IPv6 network is kept as the IPv4 network it means.
    if (n.v6 && a.to_v6().is_v4_mapped() && n.prefix >= 96) {
        a = unmapped(a);
        n.v6 = false;
        n.prefix -= 96;
    }
    if (n.v6) {
        auto b = a.to_v6().to_bytes();
        std::copy(b.begin(), b.end(), n.bytes.begin());
    } else {
        auto b = a.to_v4().to_bytes();
        std::copy(b.begin(), b.end(), n.bytes.begin());
    }
    // Host bits set ("10.1.2.3/8") are accepted and masked: what is meant is clear.
    for (unsigned bit = n.prefix; bit < 128; ++bit)
        n.bytes[bit / 8] &= static_cast<unsigned char>(~(0x80u >> (bit % 8)));
    networks_.push_back(n);
}

bool cidr_set::contains(const boost::asio::ip::address& address) const {
    const ip::address a = unmapped(address);
    std::array<unsigned char, 16> bytes{};
    if (a.is_v6()) {
        auto b = a.to_v6().to_bytes();
        std::copy(b.begin(), b.end(), bytes.begin());
    } else {
        auto b = a.to_v4().to_bytes();
        std::copy(b.begin(), b.end(), bytes.begin());
    }
    for (const auto& n : networks_) {
        if (n.v6 != a.is_v6())
            continue;
        unsigned full = n.prefix / 8;
        unsigned rest = n.prefix % 8;
        if (!std::equal(bytes.begin(), bytes.begin() + full, n.bytes.begin()))
            continue;
        if (rest != 0) {
            auto mask = static_cast<unsigned char>(0xFFu << (8 - rest));
            if ((bytes[full] & mask) != n.bytes[full])
                continue;
        }
        return true;
    }
    return false;
}

}  // namespace ratelimit_proxy::common
