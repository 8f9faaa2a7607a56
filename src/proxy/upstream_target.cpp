#include "ratelimit_proxy/proxy/upstream_target.hpp"

#include <boost/url/parse.hpp>

#include <stdexcept>

namespace ratelimit_proxy::proxy {

namespace {
char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

// True if the path has a "." or ".." segment, also when dots or separators are
// percent-encoded or written as backslashes: some upstreams decode those before routing.
bool has_dot_segment(std::string_view path) {
    std::string decoded;
    decoded.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        char c = path[i];
        if (c == '%' && i + 2 < path.size() && hex_value(path[i + 1]) >= 0 &&
            hex_value(path[i + 2]) >= 0) {
            const char d = static_cast<char>(hex_value(path[i + 1]) * 16 + hex_value(path[i + 2]));
            if (d == '.' || d == '/' || d == '\\') {
                c = d;
                i += 2;
            }
        }
        decoded.push_back(c == '\\' ? '/' : c);
    }
    std::size_t start = 0;
    while (start <= decoded.size()) {
        std::size_t end = decoded.find('/', start);
        if (end == std::string::npos)
            end = decoded.size();
        const std::string_view segment(decoded.data() + start, end - start);
        if (segment == "." || segment == "..")
            return true;
        start = end + 1;
    }
    return false;
}
}  // namespace

upstream_target upstream_target::parse(std::string_view url) {
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed)
        throw std::invalid_argument("not a valid URL");
    upstream_target t;
    auto scheme = parsed->scheme();
    if (scheme == "https") {
        t.tls = true;
    } else if (scheme != "http") {
        throw std::invalid_argument("scheme must be http or https");
    }
    t.host = std::string(parsed->encoded_host());
    if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']')
        t.host = t.host.substr(1, t.host.size() - 2);
    if (t.host.empty())
        throw std::invalid_argument("no host");
    const std::string default_port = t.tls ? "443" : "80";
    t.port =
        parsed->has_port() && !parsed->port().empty() ? std::string(parsed->port()) : default_port;
    t.host_header = std::string(parsed->encoded_host());
    if (t.port != default_port)
        t.host_header += ":" + t.port;
    t.base_path = std::string(parsed->encoded_path());
    while (!t.base_path.empty() && t.base_path.back() == '/')
        t.base_path.pop_back();
    return t;
}

target_error map_request_target(std::string_view request_target, std::string_view api_prefix,
                                const upstream_target& upstream, std::string& out) {
    if (request_target.empty() || request_target.front() != '/')
        return target_error::bad_target;
    if (request_target.substr(0, api_prefix.size()) != api_prefix)
        return target_error::not_under_prefix;
    std::string_view rest = request_target.substr(api_prefix.size());
    if (!rest.empty() && rest.front() != '/' && rest.front() != '?')
        return target_error::not_under_prefix;  // "/apix" is not under "/api"
    std::string_view path = rest.substr(0, rest.find('?'));
    std::string_view query = rest.substr(path.size());
    if (has_dot_segment(path))
        return target_error::bad_target;
    for (char c : rest) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#')
            return target_error::bad_target;
    }
    out.clear();
    out.reserve(upstream.base_path.size() + rest.size() + 1);
    out.append(upstream.base_path).append(path);
    if (out.empty())
        out = "/";
    out.append(query);
    return target_error::none;
}

}  // namespace ratelimit_proxy::proxy
