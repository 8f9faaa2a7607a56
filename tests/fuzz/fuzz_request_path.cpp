// libFuzzer target: the request path of the proxy, without sockets. The input is the bytes a
// client sends; when Beast's request parser accepts a header from them, that request goes through
// what the session does with it (auth::bearer_token on Authorization, proxy::map_request_target
// on the target, proxy::rewrite_request on the fields) and the invariants the proxy relies on
// for its security are checked. A violation is __builtin_trap(); ASan/UBSan catch memory errors
// and undefined behaviour on the way.
#include "ratelimit_proxy/auth/token.hpp"
#include "ratelimit_proxy/common/http_text.hpp"
#include "ratelimit_proxy/proxy/header_rewrite.hpp"
#include "ratelimit_proxy/proxy/upstream_target.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

namespace http = boost::beast::http;
namespace proxy = ratelimit_proxy::proxy;
namespace common = ratelimit_proxy::common;
namespace auth = ratelimit_proxy::auth;

#define RLP_CHECK(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::fprintf(stderr, "fuzz_request_path: invariant violated at %s:%d: %s\n", __FILE__, \
                         __LINE__, #cond);                                                         \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (false)

constexpr std::string_view api_prefix = "/api";
constexpr std::string_view client_address = "192.0.2.7";

// An independent check that a mapped path cannot climb out of the base path: after decoding
// percent-encoded dots and separators (and treating '\' as '/', as some servers do), no
// segment is "." or "..".
bool climbs(std::string_view path) {
    std::string decoded;
    for (std::size_t i = 0; i < path.size(); ++i) {
        char c = path[i];
        if (c == '%' && i + 2 < path.size() && common::hex_digit_value(path[i + 1]) >= 0 &&
            common::hex_digit_value(path[i + 2]) >= 0) {
            const char d = static_cast<char>(common::hex_digit_value(path[i + 1]) * 16 +
                                             common::hex_digit_value(path[i + 2]));
            if (d == '.' || d == '/' || d == '\\') {
                c = d;
                i += 2;
            }
        }
        decoded.push_back(c == '\\' ? '/' : c);
    }
    decoded.push_back('/');
    return decoded.find("/./") != std::string::npos || decoded.find("/../") != std::string::npos;
}

const proxy::upstream_target& upstream_with_base() {
    static const proxy::upstream_target t =
        proxy::upstream_target::parse("https://api.example.com/v1/");
    return t;
}

const proxy::upstream_target& upstream_without_base() {
    static const proxy::upstream_target t = proxy::upstream_target::parse("http://127.0.0.1:8080");
    return t;
}

void check_target(std::string_view target, const proxy::upstream_target& upstream) {
    std::string out = "untouched";
    const auto err = proxy::map_request_target(target, api_prefix, upstream, out);
    if (err != proxy::target_error::none)
        return;
    // Only targets under the prefix are mapped: "/api", "/api/...", "/api?...".
    RLP_CHECK(target.substr(0, api_prefix.size()) == api_prefix);
    const std::string_view rest = target.substr(api_prefix.size());
    RLP_CHECK(rest.empty() || rest.front() == '/' || rest.front() == '?');
    // base path + the rest, and nothing else.
    RLP_CHECK(std::string_view(out).substr(0, upstream.base_path.size()) == upstream.base_path);
    RLP_CHECK(!out.empty() && out.front() == '/');
    const std::string_view path = std::string_view(out).substr(0, out.find('?'));
    RLP_CHECK(!climbs(path));
    for (char c : out)
        RLP_CHECK(static_cast<unsigned char>(c) > 0x20 && c != 0x7f && c != '#');
}

void check_bearer(std::string_view value) {
    const auto token = auth::bearer_token(value);
    if (!token)
        return;
    RLP_CHECK(!token->empty());
    RLP_CHECK(token->find_first_of(" \t,") == std::string_view::npos);
    // A view into the header value, after the scheme.
    RLP_CHECK(token->data() >= value.data() + 7 &&
              token->data() + token->size() <= value.data() + value.size());
    RLP_CHECK(common::ascii_iequals(value.substr(0, 6), "bearer"));
    // Shape checks never throw or read out of bounds.
    (void)auth::looks_like_token(*token);
}

void check_rewrite(const http::fields& original, const proxy::request_rewrite& rewrite) {
    http::fields fields = original;
    proxy::rewrite_request(fields, rewrite, client_address);

    // Hop-by-hop headers never reach the upstream...
    for (auto f : proxy::hop_by_hop_fields)
        RLP_CHECK(fields.count(f) == 0);
    // ...nor do the headers the client's Connection header names, except those the rewrite
    // sets itself afterwards.
    for (auto it = original.begin(); it != original.end(); ++it) {
        if (it->name() != http::field::connection)
            continue;
        std::string_view value = it->value();
        while (true) {
            const auto comma = value.find(',');
            const auto name = common::trim_ows(value.substr(0, comma));
            if (!name.empty() && !common::ascii_iequals(name, "host") &&
                !common::ascii_iequals(name, rewrite.key_header) &&
                !common::ascii_iequals(name, "x-forwarded-for") &&
                !common::ascii_iequals(name, "x-forwarded-proto"))
                RLP_CHECK(fields.count(name) == 0);
            if (comma == std::string_view::npos)
                break;
            value.remove_prefix(comma + 1);
        }
    }
    // Exactly one Host: the upstream's.
    RLP_CHECK(fields.count(http::field::host) == 1);
    RLP_CHECK(fields[http::field::host] == rewrite.host_header);
    // The client's credentials are gone; the upstream key is there exactly once.
    if (!common::ascii_iequals(rewrite.key_header, "authorization"))
        RLP_CHECK(fields.count(http::field::authorization) == 0);
    RLP_CHECK(fields.count(rewrite.key_header) == 1);
    RLP_CHECK(fields[rewrite.key_header] == rewrite.key_value);
    // Forwarding headers: one each, the client's address last.
    RLP_CHECK(fields.count("X-Forwarded-For") == 1);
    const std::string_view xff = fields["X-Forwarded-For"];
    RLP_CHECK(xff.size() >= client_address.size() &&
              xff.substr(xff.size() - client_address.size()) == client_address);
    RLP_CHECK(fields.count("X-Forwarded-Proto") == 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);  // server.max_header_bytes' default
    parser.body_limit(64 * 1024);
    parser.eager(true);

    boost::beast::error_code ec;
    std::size_t offset = 0;
    while (offset < size && !parser.is_done()) {
        const std::size_t used = parser.put(boost::asio::buffer(data + offset, size - offset), ec);
        if (ec == http::error::need_more) {
            ec = {};
            break;
        }
        if (ec || used == 0)
            break;
        offset += used;
    }
    if (!parser.is_header_done())
        return 0;

    const auto& req = parser.get();
    const std::string_view target(req.target().data(), req.target().size());
    check_target(target, upstream_with_base());
    check_target(target, upstream_without_base());

    for (auto it = req.begin(); it != req.end(); ++it) {
        if (it->name() == http::field::authorization)
            check_bearer(it->value());
    }

    const http::fields& original = req.base();
    check_rewrite(original, {upstream_with_base().host_header, "Authorization", "Bearer sk-fuzz"});
    check_rewrite(original, {upstream_without_base().host_header, "x-api-key", "sk-fuzz"});
    return 0;
}
