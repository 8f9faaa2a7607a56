#include "ratelimit_proxy/server/local_reply.hpp"

namespace ratelimit_proxy::server {

void verdict::forward(const char* decision_label) {
    what = kind::forward;
    label = decision_label;
}

void verdict::local(http::status s, std::string_view error_code, std::string_view text) {
    what = kind::local;
    status = s;
    error = error_code;
    message.assign(text);
    retry_after = {};
    allow = {};
}

void verdict::local_json(http::status s, std::string_view body) {
    local(s, {}, body);
}

void verdict::too_many_requests(std::string_view what_is_exceeded) {
    // Null only for a store reply that denies with no enforced result: still a 429.
    const std::string_view retry = limit_headers ? limit_headers->retry_after : std::string_view();
    local(http::status::too_many_requests, "rate_limited", what_is_exceeded);
    message.append("; retry after ").append(retry).append(" seconds");
}

std::string json_error(std::string_view error, std::string_view message) {
    std::string body;
    body.reserve(32 + error.size() + message.size());
    body.append("{\"error\":\"").append(error).append("\",\"message\":\"");
    for (char c : message) {
        if (c == '"' || c == '\\')
            body.push_back('\\');
        body.push_back(c);
    }
    body.append("\"}");
    return body;
}

void build_local_reply(const verdict& v, unsigned version, bool keep_alive,
                       http::response<http::string_body>& out) {
    out = {};
    out.result(v.status);
    out.version(version);
    out.set(http::field::server, "ratelimit-proxy");
    out.set(http::field::content_type, "application/json");
    out.set(http::field::cache_control, "no-store");
    if (v.status == http::status::unauthorized)
        out.set(http::field::www_authenticate, "Bearer");
    if (!v.allow.empty())
        out.set(http::field::allow, v.allow);
    if (!v.retry_after.empty())
        out.set(http::field::retry_after, v.retry_after);
    out.body() = v.error.empty() ? v.message : json_error(v.error, v.message);
    out.keep_alive(keep_alive);
    out.prepare_payload();
}

}  // namespace ratelimit_proxy::server
