#include "ratelimit_proxy/config/host_port.hpp"

#include <boost/asio/ip/address.hpp>

#include <charconv>
#include <stdexcept>

namespace ratelimit_proxy::config {

host_port parse_host_port(std::string_view text) {
    const auto shape_error = [&] {
        return std::invalid_argument("expected host:port, got \"" + std::string(text) + "\"");
    };
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size())
        throw shape_error();
    std::string_view host = text.substr(0, colon);
    const std::string_view port = text.substr(colon + 1);
    if (host.front() == '[' || host.back() == ']') {
        if (host.size() < 3 || host.front() != '[' || host.back() != ']')
            throw shape_error();
        host = host.substr(1, host.size() - 2);
    }
    // At most five digits, so the number cannot overflow before the range check.
    unsigned value = 0;
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::from_chars(port.data(), port.data() + port.size(), value).ec != std::errc() ||
        value > 65535)
        throw std::invalid_argument("invalid port in \"" + std::string(text) + "\"");
    return {std::string(host), static_cast<std::uint16_t>(value)};
}

boost::asio::ip::tcp::endpoint listen_endpoint(const host_port& address) {
    namespace ip = boost::asio::ip;
    if (address.host == "localhost")
        return {ip::address_v4::loopback(), address.port};
    if (address.host == "*")
        return {ip::address_v4::any(), address.port};
    boost::system::error_code ec;
    const auto ip_address = ip::make_address(address.host, ec);
    if (ec)
        throw std::invalid_argument("\"" + address.host +
                                    "\" is not an IP address, localhost or *");
    return {ip_address, address.port};
}

}  // namespace ratelimit_proxy::config
