#include "ratelimit_proxy/proxy/header_rewrite.hpp"

#include <boost/beast/http/field.hpp>

#include <boost/container/small_vector.hpp>

#include <array>
#include <string_view>

#include "ratelimit_proxy/common/http_text.hpp"
#include "ratelimit_proxy/proxy/forwarded.hpp"

namespace ratelimit_proxy::proxy {

namespace beast = boost::beast;

namespace {

bool is_hop_by_hop(http::field f) {
    for (auto h : hop_by_hop_fields) {
        if (h == f)
            return true;
    }
    return false;
}

using name_list = boost::container::small_vector<std::string_view, 8>;

// The names listed in Connection, as views into its values. Framing and Host are never the
// sender's to drop: "Connection: content-length" would leave a body without a length and turn
// it into a second request on the upstream.
void connection_names(const http::fields& fields, name_list& out) {
    // A walk over the few fields of a message costs less than a lookup in their tree.
    for (const auto& f : fields) {
        if (f.name() != http::field::connection)
            continue;
        std::string_view value = f.value();
        while (!value.empty()) {
            auto comma = value.find(',');
            auto token = common::trim_ows(value.substr(0, comma));
            if (!token.empty() && !beast::iequals(token, "content-length") &&
                !beast::iequals(token, "host") && !beast::iequals(token, "transfer-encoding") &&
                !beast::iequals(token, "connection"))
                out.emplace_back(token);
            if (comma == std::string_view::npos)
                break;
            value.remove_prefix(comma + 1);
        }
    }
}

bool listed(std::span<const std::string_view> names, std::string_view name) {
    for (auto n : names) {
        if (beast::iequals(n, name))
            return true;
    }
    return false;
}

// One walk over the fields instead of a tree lookup per name: hop-by-hop fields, the fields
// Connection names and those `also_drop` picks go. Connection itself goes last, as the names
// are views into its values.
template <class Predicate>
void erase_hop_by_hop_and(http::fields& fields, Predicate&& also_drop) {
    name_list named;
    connection_names(fields, named);
    bool has_connection = false;
    for (auto it = fields.begin(); it != fields.end();) {
        const auto f = it->name();
        if (f == http::field::connection) {
            has_connection = true;
            ++it;
        } else if (is_hop_by_hop(f) || listed(named, it->name_string()) || also_drop(*it)) {
            it = fields.erase(it);
        } else {
            ++it;
        }
    }
    if (has_connection)
        fields.erase(http::field::connection);
}

}  // namespace

void strip_hop_by_hop(http::fields& fields) {
    erase_hop_by_hop_and(fields, [](const http::fields::value_type&) { return false; });
}

void rewrite_request(http::fields& fields, const request_rewrite& rewrite,
                     std::string_view client_address, const request_correlation& correlation) {
    forwarded_fields forwarded;
    erase_hop_by_hop_and(fields, [&](const http::fields::value_type& f) {
        if (f.name() == http::field::authorization || f.name() == http::field::host)
            return true;
        // By name: a key header may be any name.
        const auto name = f.name_string();
        if (correlation.drop_request_id && beast::iequals(name, "X-Request-Id"))
            return true;
        if (!correlation.keep_trace &&
            (beast::iequals(name, "traceparent") || beast::iequals(name, "tracestate")))
            return true;
        return forwarded.take(name, f.value()) || beast::iequals(name, rewrite.key_header);
    });
    if (!rewrite.key_value.empty())
        fields.insert(rewrite.key_header, rewrite.key_value);
    fields.insert(http::field::host, rewrite.host_header);
    forwarded.insert(fields, client_address);
}

void rewrite_response(http::fields& fields, std::span<const std::string_view> replaced) {
    erase_hop_by_hop_and(fields, [&](const http::fields::value_type& f) {
        return listed(replaced, f.name_string());
    });
}

}  // namespace ratelimit_proxy::proxy
