#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include <string>
#include <string_view>

#include "ratelimit_proxy/limit/rate_limit_headers.hpp"

namespace ratelimit_proxy::server {

namespace http = boost::beast::http;

// How one request is answered: relayed to the upstream, or answered by the proxy itself
// (401, 403, 404, 405, 429, 503, and the session's own 400, 413, 431, 502, 504).
struct verdict {
    enum class kind { forward, local };
    kind what = kind::forward;
    const char* label = "-";  // decision= in the access log
    // The limit headers either answer carries; null: none.
    const limit::rate_limit_headers* limit_headers = nullptr;

    // A local answer only.
    http::status status = http::status::ok;
    std::string_view error;  // the error code; empty: a success answer
    // With an error code the message of {"error","message"}; without, the JSON body itself.
    std::string message;
    std::string_view retry_after;  // a 503's Retry-After when no limit headers carry one
    std::string_view allow;        // a 405's Allow: the route's methods

    void forward(const char* decision_label);
    // Clears retry_after and allow; the caller sets them after, when they apply.
    void local(http::status s, std::string_view error_code, std::string_view text);
    void local_json(http::status s, std::string_view body);
    // The 429: `what` is exceeded; the limit headers' Retry-After is quoted (set them first).
    void too_many_requests(std::string_view what);
};

// {"error":"...","message":"..."} with the message's quotes and backslashes escaped.
std::string json_error(std::string_view error, std::string_view message);

// The response of a local verdict, written over `out`: JSON, never cached, with
// WWW-Authenticate on a 401, Allow on a 405 and Retry-After when the verdict has one.
void build_local_reply(const verdict& v, unsigned version, bool keep_alive,
                       http::response<http::string_body>& out);

}  // namespace ratelimit_proxy::server
