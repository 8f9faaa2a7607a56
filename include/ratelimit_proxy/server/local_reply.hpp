#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <string>
#include <string_view>

#include "ratelimit_proxy/limit/decision.hpp"
#include "ratelimit_proxy/limit/rate_limit_headers.hpp"

namespace ratelimit_proxy::server {

namespace http = boost::beast::http;

// How one request is answered: relayed to the upstream, or answered by the proxy itself
// (401, 403, 404, 405, 429, 503, and the session's own 400, 413, 431, 502, 504).
struct verdict {
    // read_body: the request's policies need its body (model, token bound) before they can
    // be checked; the session reads it whole and calls admission::body_ready().
    enum class kind { forward, local, read_body };
    kind what = kind::forward;
    const char* label = "-";  // decision= in the access log
    // The limit headers either answer carries; null: none.
    const limit::rate_limit_headers* limit_headers = nullptr;
    // The policy that decided: the denying one, or the tightest that allowed; source null:
    // no policy decided. Its source lives as long as admission holds the rules.
    limit::policy_result deciding;
    // The route for logs (admission::route_slot() is the metrics' twin): the first policy of
    // the rules with a route match the request meets (rule_set::route_of), "register" for
    // POST /register; empty: none ("other").
    std::string_view route;
    std::chrono::steady_clock::duration check_time{};  // the limit check, sent to answered

    // A local answer only.
    http::status status = http::status::ok;
    std::string_view error;  // the error code (error.code); empty: a success answer
    // With an error code the error's message; without, the JSON body itself.
    std::string message;
    std::string_view retry_after;  // a 503's Retry-After when no limit headers carry one
    std::string_view allow;        // a 405's Allow: the route's methods

    void forward(const char* decision_label);
    // Clears retry_after and allow; the caller sets them after, when they apply.
    void local(http::status s, std::string_view error_code, std::string_view text);
    void local_json(http::status s, std::string_view body);
    // The 429: `what` is exceeded; the limit headers' Retry-After is quoted (set them first).
    void too_many_requests(std::string_view what);
    // The 429 of a spent budget: code insufficient_quota (final for SDKs and agents).
    void budget_spent(std::string_view what);
    // Forget what the last request's check said (deciding, route, check_time).
    void clear_decision();
};

// What a local answer needs besides its verdict.
struct reply_context {
    std::string_view request_id;
    bool expose_limits = true;  // a 429 names its policy, scope, limit and window
};

// The error.type of an error answer with this status, in the OpenAI API's manner:
// invalid_request_error, authentication_error, permission_error, rate_limited, ...
std::string_view error_type(http::status s);

// scope of a 429 body from the policy's key kind: token, ip, route, global.
std::string_view scope_name(limit::key_kind k);

// The body of an error answer, in the shape OpenAI's SDKs read:
// {"error":{"message","type","code","param":null},"request_id"}, and for a 429 also policy,
// scope, limit, window_seconds, remaining (hidden unless expose_limits) and retry_after.
void error_body(const verdict& v, const reply_context& context, std::string& out);

// The response of a local verdict, written over `out`: JSON, never cached, with
// WWW-Authenticate on a 401, Allow on a 405 and Retry-After when the verdict has one.
void build_local_reply(const verdict& v, const reply_context& context, unsigned version,
                       bool keep_alive, http::response<http::string_body>& out);

}  // namespace ratelimit_proxy::server
