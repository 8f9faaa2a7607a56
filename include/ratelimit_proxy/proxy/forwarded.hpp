#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/fields.hpp>

#include <string>
#include <string_view>

#include "ratelimit_proxy/common/cidr.hpp"

namespace ratelimit_proxy::proxy {

namespace http = boost::beast::http;

// X-Forwarded-For both ways: who the client is (inbound), and what the upstream is told
// (outbound).

// The client's address for per-IP limits and access lists: the peer, unless the peer is a
// trusted proxy; then X-Forwarded-For is walked from the right, skipping trusted addresses,
// and the first untrusted one is the client (the leftmost if all are trusted). A malformed
// entry stops the walk at the last good address. `forwarded_for` is every X-Forwarded-For
// value joined with ",".
boost::asio::ip::address resolve_client_address(const boost::asio::ip::address& peer,
                                                std::string_view forwarded_for,
                                                const common::cidr_set& trusted);

// The same from a request's fields. Without trusted proxies the peer is the client as it is
// (nothing is read or joined).
boost::asio::ip::address resolve_client_address(const boost::asio::ip::address& peer,
                                                const http::fields& fields,
                                                const common::cidr_set& trusted);

// The X-Forwarded-* fields of a request on its way upstream. The rewrite walks the fields
// once; each one goes through take(), which keeps the X-Forwarded-For values in order, then
// insert() writes the chain with the proxy's own hop appended, and X-Forwarded-Proto. Inline:
// both run on every proxied request, take() once per field.
class forwarded_fields {
  public:
    // True for a field this replaces (X-Forwarded-For, X-Forwarded-Proto, by name: Beast has
    // no enum value for them): the caller drops it.
    bool take(std::string_view name, std::string_view value) {
        if (boost::beast::iequals(name, "X-Forwarded-For")) {
            if (!chain_.empty())
                chain_ += ", ";
            chain_ += value;
            return true;
        }
        return boost::beast::iequals(name, "X-Forwarded-Proto");
    }
    // "X-Forwarded-For: <taken values>, <client_address>" and "X-Forwarded-Proto: http".
    void insert(http::fields& fields, std::string_view client_address) {
        if (!chain_.empty())
            chain_ += ", ";
        chain_ += client_address;
        fields.insert("X-Forwarded-For", chain_);
        fields.insert("X-Forwarded-Proto", "http");
    }

  private:
    std::string chain_;
};

}  // namespace ratelimit_proxy::proxy
