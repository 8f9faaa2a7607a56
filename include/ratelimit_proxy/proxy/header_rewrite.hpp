#pragma once

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/fields.hpp>

#include <array>
#include <span>
#include <string>
#include <string_view>

namespace ratelimit_proxy::proxy {

namespace http = boost::beast::http;

// What the request rewrite needs to know; built once from the config.
struct request_rewrite {
    std::string host_header;  // the upstream's Host
    std::string key_header;   // e.g. "Authorization" or "x-api-key"
    std::string key_value;    // e.g. "Bearer sk-..."; empty: inject nothing
};

// Headers that describe one connection, never forwarded (RFC 9110 7.6.1, plus the
// proxy-credential fields and the legacy Proxy-Connection).
inline constexpr std::array hop_by_hop_fields = {
    http::field::connection,
    http::field::keep_alive,
    http::field::proxy_connection,
    http::field::te,
    http::field::trailer,
    http::field::transfer_encoding,
    http::field::upgrade,
    http::field::proxy_authorization,
    http::field::proxy_authenticate,
};

// Removes hop-by-hop headers and every header named in Connection (RFC 9110 7.6.1).
void strip_hop_by_hop(http::fields& fields);

// The request's correlation fields as the session settled them.
struct request_correlation {
    // X-Request-Id dropped: the proxy sends its own (as an extra line of the serialized
    // header, see outgoing_message, so no field element is allocated for it).
    bool drop_request_id = false;
    bool keep_trace = true;  // false: traceparent and tracestate dropped (invalid)
};

// Downstream request header -> upstream request header: hop-by-hop gone, the client's
// credentials (Authorization, and any copy of the key header) gone, the upstream key
// injected, Host set, the X-Forwarded-* fields as forwarded_fields writes them, and
// X-Request-Id and trace context dropped as `correlation` says.
void rewrite_request(http::fields& fields, const request_rewrite& rewrite,
                     std::string_view client_address, const request_correlation& correlation = {});

// Upstream response header -> downstream: hop-by-hop headers gone, and the fields named in
// `replaced` (those the proxy sets itself), everything else as is.
void rewrite_response(http::fields& fields, std::span<const std::string_view> replaced = {});

}  // namespace ratelimit_proxy::proxy
