#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ratelimit_proxy::proxy {

// The upstream API's base URL, parsed once at startup.
struct upstream_target {
    bool tls = false;
    std::string host;         // as written, without brackets for IPv6
    std::string port;         // always set: explicit or the scheme's default
    std::string host_header;  // host[:port], the port only when not the default
    std::string base_path;    // without trailing '/', may be empty

    // Throws std::invalid_argument.
    static upstream_target parse(std::string_view url);
};

enum class target_error { none, not_under_prefix, bad_target };

// Maps a downstream request target ("/api/models?x=1") to the upstream's
// ("/v1/models?x=1"). Rejects targets that are not origin-form or that contain dot-segments
// (plain or percent-encoded), which could otherwise climb out of the base path.
target_error map_request_target(std::string_view request_target, std::string_view api_prefix,
                                const upstream_target& upstream, std::string& out);

}  // namespace ratelimit_proxy::proxy
