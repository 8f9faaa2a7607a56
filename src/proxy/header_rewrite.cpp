#include "ratelimit_proxy/proxy/header_rewrite.hpp"

#include <boost/beast/http/field.hpp>

#include <boost/container/small_vector.hpp>

#include <array>
#include <string_view>

#include "ratelimit_proxy/proxy/http_text.hpp"

namespace ratelimit_proxy::proxy {

namespace beast = boost::beast;

void strip_hop_by_hop(http::fields& fields) {
    // Collect the names first: erasing while iterating a Connection value would invalidate it.
    // Views into the Connection values stay valid while other fields are erased; Connection
    // itself goes last, with the other hop-by-hop fields.
    boost::container::small_vector<std::string_view, 8> named;
    auto [first, last] = fields.equal_range(http::field::connection);
    for (auto it = first; it != last; ++it) {
        std::string_view value = it->value();
        while (!value.empty()) {
            auto comma = value.find(',');
            auto token = trim_ows(value.substr(0, comma));
            if (!token.empty())
                named.emplace_back(token);
            if (comma == std::string_view::npos)
                break;
            value.remove_prefix(comma + 1);
        }
    }
    for (const auto& name : named) {
        // Framing and Host are never the sender's to drop: "Connection: content-length" would
        // leave a body without a length and turn it into a second request on the upstream.
        if (beast::iequals(name, "content-length") || beast::iequals(name, "host") ||
            beast::iequals(name, "transfer-encoding") || beast::iequals(name, "connection"))
            continue;
        fields.erase(name);
    }
    for (auto f : hop_by_hop_fields)
        fields.erase(f);
}

void rewrite_request(http::fields& fields, const request_rewrite& rewrite,
                     std::string_view client_address) {
    strip_hop_by_hop(fields);
    fields.erase(http::field::authorization);
    fields.erase(rewrite.key_header);
    if (!rewrite.key_value.empty())
        fields.set(rewrite.key_header, rewrite.key_value);
    fields.set(http::field::host, rewrite.host_header);

    std::string forwarded;
    auto [first, last] = fields.equal_range("X-Forwarded-For");
    for (auto it = first; it != last; ++it) {
        if (!forwarded.empty())
            forwarded += ", ";
        forwarded += std::string_view(it->value());
    }
    if (!forwarded.empty())
        forwarded += ", ";
    forwarded += client_address;
    fields.set("X-Forwarded-For", forwarded);
    fields.set("X-Forwarded-Proto", "http");
}

void rewrite_response(http::fields& fields) {
    strip_hop_by_hop(fields);
}

}  // namespace ratelimit_proxy::proxy
