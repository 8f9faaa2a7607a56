#include "ratelimit_proxy/proxy/forwarded.hpp"

#include "ratelimit_proxy/common/http_text.hpp"

namespace ratelimit_proxy::proxy {

namespace ip = boost::asio::ip;

ip::address resolve_client_address(const ip::address& peer, std::string_view forwarded_for,
                                   const common::cidr_set& trusted) {
    ip::address client = common::unmapped(peer);
    // X-Forwarded-For from anyone but a trusted proxy is whatever the client wants it to be.
    if (trusted.empty() || !trusted.contains(client))
        return client;
    // Right to left: each trusted hop vouches for the entry left of it.
    while (!forwarded_for.empty()) {
        auto comma = forwarded_for.rfind(',');
        auto entry = common::trim_ows(
            comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1));
        forwarded_for =
            comma == std::string_view::npos ? std::string_view{} : forwarded_for.substr(0, comma);
        if (entry.empty())
            continue;  // "a, , b" or an empty header line: carries nothing
        auto parsed = common::parse_address(entry);
        if (!parsed)
            return client;  // "unknown", a port, garbage: trust nothing further left
        client = common::unmapped(*parsed);
        if (!trusted.contains(client))
            return client;
    }
    return client;
}

ip::address resolve_client_address(const ip::address& peer, const http::fields& fields,
                                   const common::cidr_set& trusted) {
    if (trusted.empty())
        return peer;
    std::string forwarded_for;
    auto [first, last] = fields.equal_range("X-Forwarded-For");
    for (auto it = first; it != last; ++it) {
        if (!forwarded_for.empty())
            forwarded_for.push_back(',');
        forwarded_for.append(it->value());
    }
    return resolve_client_address(peer, forwarded_for, trusted);
}

}  // namespace ratelimit_proxy::proxy
