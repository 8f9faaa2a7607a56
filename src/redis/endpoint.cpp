#include "ratelimit_proxy/redis/endpoint.hpp"

#include <boost/url/parse.hpp>
#include <charconv>
#include <stdexcept>
#include <string>

#include "ratelimit_proxy/common/http_text.hpp"

namespace ratelimit_proxy::redis {

namespace {

constexpr std::string_view url_form = "redis://[[user]:password@]host[:port][/db]";

// Messages never quote the URL: it may carry a password.
[[noreturn]] void bad_url(const std::string& what) {
    throw std::invalid_argument("invalid Redis URL: " + what);
}

}  // namespace

endpoint parse_url(std::string_view url) {
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed)
        bad_url("not a URL (" + parsed.error().message() + "); expected " + std::string(url_form));
    const auto& u = *parsed;

    if (common::ascii_iequals(u.scheme(), "rediss"))
        bad_url("rediss:// (Redis over TLS) is not supported; use redis://");
    if (!common::ascii_iequals(u.scheme(), "redis"))
        bad_url("scheme must be redis://, not " + std::string(u.scheme()) + "://");
    if (!u.has_authority())
        bad_url("expected " + std::string(url_form));
    if (u.has_query())
        bad_url("query parameters are not supported");
    if (u.has_fragment())
        bad_url("a fragment (#...) is not supported");

    endpoint ep;
    if (u.host_type() == boost::urls::host_type::ipvfuture)
        bad_url("IPvFuture host addresses are not supported");
    if (!u.encoded_host().empty())
        ep.host = u.host_address();
    // A decoded %00 or newline would reach getaddrinfo and the logs as part of a host name.
    for (const unsigned char c : ep.host) {
        if (c < 0x21 || c == 0x7f)
            bad_url("the host name contains a control character or space");
    }

    if (u.has_port()) {
        auto text = u.port();
        unsigned value = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value == 0 ||
            value > 65535)
            bad_url("port must be a number from 1 to 65535");
        ep.port = static_cast<std::uint16_t>(value);
    }

    if (u.has_userinfo()) {
        // A lone userinfo is ambiguous (user or password?): the form demands the colon.
        if (!u.has_password())
            bad_url(
                "credentials need a colon: redis://:password@host or redis://user:password@host");
        ep.username = u.user();
        ep.password = u.password();
        if (!ep.username.empty() && ep.password.empty())
            bad_url("user name given without a password");
    }

    std::string path = u.path();
    if (!path.empty() && path != "/") {
        std::string_view digits = std::string_view(path).substr(1);
        int db = -1;
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), db);
        if (path.front() != '/' || ec != std::errc{} || end != digits.data() + digits.size() ||
            db < 0)
            bad_url("database must be a non-negative number, as in redis://host:6379/3");
        ep.db = db;
    }
    return ep;
}

}  // namespace ratelimit_proxy::redis
