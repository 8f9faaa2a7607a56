#include "ratelimit_proxy/server/session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/container/static_vector.hpp>
#include <cstring>

#include "ratelimit_proxy/auth/token.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/proxy/header_rewrite.hpp"
#include "ratelimit_proxy/proxy/http_text.hpp"
#include "ratelimit_proxy/proxy/upstream_target.hpp"
#include "ratelimit_proxy/server/worker.hpp"

namespace ratelimit_proxy::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

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

bool is_idempotent(http::verb v) {
    switch (v) {
        case http::verb::get:
        case http::verb::head:
        case http::verb::options:
        case http::verb::put:
        case http::verb::delete_:
            return true;
        default:
            return false;
    }
}

// The limit headers go into the serialized header as text (see outgoing_message); any of
// the same names from the upstream are dropped first.
std::string_view limit_lines(const std::optional<limit::rate_limit_headers>& h,
                             std::string& lines) {
    lines.clear();
    if (h)
        h->append_lines(lines);
    return lines;
}

// The parser frames a body only by a final "chunked"; a request whose Transfer-Encoding is a
// list, an unknown coding or repeated could be framed differently by the upstream or a
// server behind it, so it is refused rather than relayed (RFC 9112 6.1, 6.3).
bool acceptable_framing(const http::request_header<>& req) {
    auto [first, last] = req.equal_range(http::field::transfer_encoding);
    if (first == last)
        return true;
    if (std::next(first) != last || req.version() < 11)
        return false;
    return beast::iequals(proxy::trim_ows(first->value()), "chunked");
}

}  // namespace

session::session(socket_type&& socket, worker& owner) : owner_(owner), stream_(std::move(socket)) {
    beast::error_code ec;
    auto peer = stream_.socket().remote_endpoint(ec);
    if (!ec)
        peer_address_ = peer.address();
    client_address_ = ec ? "unknown" : peer_address_.to_string();
    stream_.socket().set_option(tcp::no_delay(true), ec);
    stream_.socket().non_blocking(true, ec);  // for the watch's direct read
    owner_.add(this);
}

session::~session() {
    if (body_buffer_)
        owner_.return_buffer(std::move(body_buffer_));
    owner_.return_exchange(std::move(exchange_));
    owner_.return_header_buffer(std::move(buffer_));
    if (upstream_)
        upstream_->close();
    owner_.remove(this);
}

void session::run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read_header(); });
}

void session::drain() {
    draining_ = true;
    if (idle_)
        close();
}

void session::fail(beast::error_code ec, const char* what) {
    if (ec == asio::error::operation_aborted)
        return;
    spdlog::debug("downstream {}: {}: {}", client_address_, what, ec.message());
}

void session::close() {
    if (closed_)
        return;
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
    // Close, but keep the object: an upstream operation may still be pending (the client
    // watch closes mid-exchange) and must find its stream alive when it completes.
    if (upstream_)
        upstream_->close();
}

// ---- reading a request -------------------------------------------------------------------

void session::do_read_header() {
    if (draining_ || closed_)
        return close();
    if (buffer_.size() > 0) {
        prepare_parser();
        return read_rest_of_header();
    }
    // An idle keep-alive connection holds no buffer and no parser: the first bytes land in
    // the small watch buffer, which is free between exchanges. 10,000 idle clients then cost
    // little more than their sockets.
    parser_.reset();
    owner_.return_exchange(std::move(exchange_));
    owner_.return_header_buffer(std::move(buffer_));
    rules_.reset();
    // Two deadlines: an idle keep-alive connection may wait idle_timeout for its next request,
    // but once the first byte is in the whole header must follow within header_timeout, so a
    // client trickling a header (slowloris) cannot hold the connection for long.
    idle_ = true;
    stream_.expires_after(owner_.context().settings.server.idle_timeout);
    stream_.async_read_some(asio::buffer(watch_buffer_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                self->on_first_bytes(ec, n);
                            });
}

void session::prepare_parser() {
    const auto& s = owner_.context().settings.server;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(s.max_header_bytes));
    parser_->eager(false);  // stop after the header: the body is streamed separately
    if (s.max_body_bytes > 0) {
        parser_->body_limit(s.max_body_bytes);
    } else {
        parser_->body_limit(boost::none);
    }
}

void session::on_first_bytes(beast::error_code ec, std::size_t n) {
    idle_ = false;
    if (ec) {
        fail(ec, "wait for request");
        return close();
    }
    if (buffer_.capacity() == 0)
        buffer_ = owner_.take_header_buffer();
    auto dst = buffer_.prepare(std::max(n, first_read_size));
    std::memcpy(dst.data(), watch_buffer_.data(), n);
    buffer_.commit(n);
    prepare_parser();
    read_rest_of_header();
}

void session::read_rest_of_header() {
    idle_ = false;
    stream_.expires_after(owner_.context().settings.server.header_timeout);
    parse_header();
}

// The header is parsed from buffer_ by hand rather than with http::async_read_header, so the
// raw bytes can be checked first: Beast unfolds obs-fold lines, which a server behind or in
// front of the proxy may read differently, so a folded header is refused (RFC 9112 5.2).
void session::parse_header() {
    const auto bytes = buffer_.data();
    const std::string_view text(static_cast<const char*>(bytes.data()), bytes.size());
    const auto end = text.find("\r\n\r\n");
    const auto head = text.substr(0, end == std::string_view::npos ? text.size() : end + 2);
    if (head.find("\r\n ") != std::string_view::npos ||
        head.find("\r\n\t") != std::string_view::npos)
        return on_read_header(http::error::bad_value);
    beast::error_code ec;
    const auto used = parser_->put(bytes, ec);
    buffer_.consume(used);
    if (ec != http::error::need_more)
        return on_read_header(ec);
    stream_.async_read_some(buffer_.prepare(first_read_size),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                if (ec == asio::error::eof)
                                    ec = http::error::end_of_stream;
                                if (ec)
                                    return self->on_read_header(ec);
                                self->buffer_.commit(n);
                                self->parse_header();
                            });
}

void session::on_read_header(beast::error_code ec) {
    idle_ = false;
    status_ = 0;
    decision_label_ = "-";
    // Cleared, not replaced: the strings keep their capacity for the next request's identity.
    identity_.id.clear();
    identity_.tier.clear();
    identity_.overrides.reset();
    limit_headers_.reset();
    retried_ = false;
    upstream_time_ = {};
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
        return close();
    }
    if (ec == beast::error::timeout) {
        // tcp_stream closed the socket when the deadline passed: nothing can be sent.
        spdlog::debug("downstream {}: request header not complete within {} ms; closed",
                      client_address_, owner_.context().settings.server.header_timeout.count());
        return close();
    }
    if (ec) {
        client_keep_alive_ = false;
        method_ = "-";
        path_ = "-";
        if (ec == http::error::header_limit)
            return send_local(http::status::request_header_fields_too_large, "header_too_large",
                              "request header exceeds the configured maximum");
        if (ec == http::error::body_limit)
            return send_local(http::status::payload_too_large, "payload_too_large",
                              "request body exceeds the configured maximum");
        return send_local(http::status::bad_request, "bad_request", "malformed HTTP request");
    }

    auto& req = parser_->get();
    method_ = std::string(req.method_string());
    const std::string_view target = req.target();
    path_ = std::string(target.substr(0, target.find('?')));
    client_keep_alive_ = req.keep_alive();
    client_version_ = req.version();
    request_has_body_ = !parser_->is_done();
    request_body_started_ = false;
    rules_ = owner_.rules();
    if (owner_.context().trusted_proxies.empty()) {
        resolved_address_ = peer_address_;
        resolved_client_ = client_address_;
    } else {
        std::string forwarded_for;
        auto [first, last] = req.equal_range("X-Forwarded-For");
        for (auto it = first; it != last; ++it) {
            if (!forwarded_for.empty())
                forwarded_for.push_back(',');
            forwarded_for.append(it->value());
        }
        resolved_address_ = proxy::resolve_client_address(peer_address_, forwarded_for,
                                                          owner_.context().trusted_proxies);
        resolved_client_ = resolved_address_.to_string();
    }
    if (!acceptable_framing(req)) {
        client_keep_alive_ = false;
        return send_local(http::status::bad_request, "bad_request",
                          "unsupported Transfer-Encoding: only a single \"chunked\" is accepted");
    }
    route();
}

void session::route() {
    auto& req = parser_->get();
    const auto& prefix = owner_.context().settings.server.api_prefix;
    std::string_view path = path_;
    if (path.substr(0, prefix.size()) == prefix &&
        (path.size() == prefix.size() || path[prefix.size()] == '/'))
        return handle_api();
    if (path == "/health") {
        if (req.method() != http::verb::get && req.method() != http::verb::head)
            return send_local(http::status::method_not_allowed, "method_not_allowed",
                              "use GET /health");
        return send_json(http::status::ok, R"({"status":"ok"})");
    }
    if (path == "/ready") {
        if (req.method() != http::verb::get && req.method() != http::verb::head)
            return send_local(http::status::method_not_allowed, "method_not_allowed",
                              "use GET /ready");
        return handle_ready();
    }
    if (path == "/register") {
        if (req.method() != http::verb::post)
            return send_local(http::status::method_not_allowed, "method_not_allowed",
                              "use POST /register");
        if (rules_->address_blocked(resolved_address_)) {
            decision_label_ = "blocked";
            return send_local(http::status::forbidden, "forbidden", "this client is blocked");
        }
        return handle_register();
    }
    send_local(http::status::not_found, "not_found",
               "no such endpoint; proxied paths start with " + prefix);
}

void session::handle_ready() {
    static constexpr std::string_view ping[] = {"PING"};
    owner_.redis().command(ping, [self = shared_from_this()](redis::outcome o, redis::reply&& r) {
        if (o == redis::outcome::ok && r.type != redis::reply_type::error)
            return self->send_json(http::status::ok, R"({"status":"ready"})");
        self->send_json(http::status::service_unavailable,
                        R"({"status":"unavailable","redis":"unreachable"})");
    });
}

void session::handle_register() {
    const auto& reg = rules_->registration();
    if (reg.mode == limit::registration_mode::closed) {
        decision_label_ = "registration-closed";
        return send_local(http::status::forbidden, "registration_closed",
                          "registration is closed; ask the operator for a token");
    }
    if (reg.mode == limit::registration_mode::secret) {
        const auto sent = parser_->get()["X-Registration-Secret"];
        // Digests of both, so the comparison takes the same time whatever was sent.
        if (sent.empty() ||
            !auth::digests_equal(auth::sha256(std::string_view(sent.data(), sent.size())),
                                 auth::sha256(reg.secret))) {
            decision_label_ = "registration-refused";
            return send_local(http::status::forbidden, "registration_refused",
                              "registration needs the registration secret in "
                              "X-Registration-Secret");
        }
    }
    // Registration is limited per client address, like any other policy.
    items_used_ = 0;
    add_check_item(owner_.register_policy(), 1.0);
    items_.resize(items_used_);
    owner_.limiter().check(items_, [self = shared_from_this()](limit::decision&& d) {
        self->on_register_decision(std::move(d));
    });
}

void session::on_register_decision(limit::decision&& d) {
    if (closed_)
        return;
    if (!d.allowed) {
        decision_label_ = "denied";
        limit_headers_ = limit::make_headers(d);
        if (d.store_unavailable)
            return send_local(http::status::service_unavailable, "unavailable",
                              "cannot store the token: Redis is unreachable");
        return send_local(http::status::too_many_requests, "rate_limited",
                          "too many registrations from this address; retry after " +
                              limit_headers_->retry_after + " seconds");
    }
    limit_headers_.reset();
    owner_.tokens().issue(
        rules_->default_tier(), [self = shared_from_this()](std::optional<std::string> token) {
            if (!token)
                return self->send_local(http::status::service_unavailable, "unavailable",
                                        "cannot store the token: Redis is unreachable");
            self->send_json(http::status::created, "{\"token\":\"" + *token + "\"}");
        });
}

void session::handle_api() {
    auto& req = parser_->get();
    // TRACE would echo the injected upstream key back; CONNECT is no request for an API.
    if (req.method() == http::verb::trace || req.method() == http::verb::connect)
        return send_local(http::status::method_not_allowed, "method_not_allowed",
                          "TRACE and CONNECT are not relayed");
    if (rules_->address_blocked(resolved_address_)) {
        decision_label_ = "blocked";
        return send_local(http::status::forbidden, "forbidden", "this client is blocked");
    }
    auto token = auth::bearer_token(req[http::field::authorization]);
    if (!token) {
        decision_label_ = "unauthenticated";
        return send_local(http::status::unauthorized, "unauthorized",
                          "missing bearer token: send Authorization: Bearer <token> from POST "
                          "/register");
    }
    if (owner_.tokens().cached(*token, identity_))
        return check_limit();
    owner_.tokens().lookup(*token, [self = shared_from_this()](auth::lookup_result result) {
        self->on_lookup(result);
    });
}

void session::on_lookup(const auth::lookup_result& result) {
    if (closed_)
        return;
    switch (result.status) {
        case auth::lookup_status::found:
            identity_ = result.who;
            return check_limit();
        case auth::lookup_status::unknown:
            decision_label_ = "unauthenticated";
            return send_local(http::status::unauthorized, "unauthorized", "unknown token");
        case auth::lookup_status::unavailable:
            decision_label_ = "unavailable";
            return send_local(http::status::service_unavailable, "unavailable",
                              "cannot verify the token: Redis is unreachable");
    }
}

void session::check_limit() {
    const auto& rules = *rules_;
    switch (rules.classify(identity_.id, resolved_address_)) {
        case limit::access::block:
            decision_label_ = "blocked";
            return send_local(http::status::forbidden, "forbidden", "this token is blocked");
        case limit::access::bypass:
            decision_label_ = "bypass";
            return forward();
        case limit::access::normal:
            break;
    }
    const auto& emergency = rules.override_state();
    if (emergency.block_all) {
        decision_label_ = "emergency-block";
        retry_after_ = "60";
        return send_local(http::status::service_unavailable, "emergency_block",
                          "the operator has paused all traffic; retry later");
    }
    selected_.clear();
    rules.select(identity_.tier, method_, path_, selected_);
    items_used_ = 0;
    scale_ = emergency.factor * owner_.context().load->factor();
    for (const auto* p : selected_)
        add_check_item(*p, scale_);
    items_.resize(items_used_);
    if (items_.empty()) {
        decision_label_ = "unlimited";
        return forward();
    }
    check_started_ = std::chrono::steady_clock::now();
    if (limit::decision known; owner_.denials().lookup(items_, scale_, check_started_, known)) {
        return on_decision(std::move(known), true);
    }
    owner_.limiter().check(items_, [self = shared_from_this()](limit::decision&& d) {
        self->on_decision(std::move(d));
    });
}

void session::add_check_item(const limit::policy& p, double scale) {
    // Items are kept across requests and overwritten, so their keys' buffers are reused.
    auto& item = items_used_ < items_.size() ? items_[items_used_] : items_.emplace_back();
    ++items_used_;
    item.source = &p;
    limit::assign_bucket_key(item.key, owner_.context().settings.redis.key_prefix, p.name, p.key,
                             identity_.id, resolved_client_, method_, path_);
    item.numbers = p.numbers;
    if (identity_.overrides) {
        if (auto it = identity_.overrides->find(p.name); it != identity_.overrides->end())
            item.numbers = it->second.apply(item.numbers);
    }
    if (scale < 1) {
        // Tighter, never looser: at least one request per window stays possible.
        item.numbers.limit = std::max(1.0, item.numbers.limit * scale);
        if (item.numbers.burst > 0)
            item.numbers.burst = std::max(1.0, item.numbers.burst * scale);
    }
    item.cost = p.cost;
    item.shadow = p.shadow || rules_->shadow_all();
}

void session::count_decision(const limit::decision& d) {
    for (const auto& r : d.results) {
        auto* counters = r.source->counters.get();
        if (r.shadow && !r.allowed) {
            // Shadow mode: what enforcement would have done, for the operator only.
            spdlog::info("shadow: policy \"{}\" would deny {} {} (token {}, client {})",
                         r.source->name, method_, path_,
                         identity_.id.empty() ? "-" : identity_.id.substr(0, 8), resolved_client_);
            if (counters)
                counters->add(limit::policy_counters::shadow_denied, owner_.index());
        } else if (counters) {
            counters->add(
                r.allowed ? limit::policy_counters::allowed : limit::policy_counters::denied,
                owner_.index());
        }
    }
}

void session::on_decision(limit::decision&& d, bool known_denial) {
    if (closed_)
        return;
    count_decision(d);
    if (d.store_unavailable) {
        decision_label_ = "unavailable";
        limit_headers_.reset();
        retry_after_ = "1";
        return send_local(http::status::service_unavailable, "unavailable",
                          "the rate limit cannot be checked now (Redis is unreachable) and this "
                          "limit fails closed; retry shortly");
    }
    auto headers = limit::make_headers(d);
    if (headers.empty()) {
        limit_headers_.reset();
    } else {
        limit_headers_ = std::move(headers);
    }
    if (!d.allowed) {
        if (known_denial) {
            decision_label_ = "denied-cached";
        } else {
            // Measured from when the check was sent, so it never outlasts the store's answer.
            owner_.denials().remember(items_, d, scale_, check_started_);
            decision_label_ = d.decided_locally ? "denied-local" : "denied";
        }
        return send_local(
            http::status::too_many_requests, "rate_limited",
            "rate limit exceeded; retry after " + limit_headers_->retry_after + " seconds");
    }
    decision_label_ = d.decided_locally ? "allowed-local" : "allowed";
    forward();
}

void session::forward() {
    auto& req = parser_->get();
    std::string upstream_target;
    const auto mapped =
        proxy::map_request_target(req.target(), owner_.context().settings.server.api_prefix,
                                  owner_.context().upstream, upstream_target);
    if (mapped != proxy::target_error::none)
        return send_local(http::status::bad_request, "bad_request",
                          "request target must be a plain path without . or .. segments");
    req.target(upstream_target);
    expect_continue_ = beast::iequals(req[http::field::expect], "100-continue");
    req.erase(http::field::expect);
    const bool chunked = req.chunked();
    proxy::rewrite_request(req, owner_.context().rewrite, client_address_);
    req.version(11);
    if (chunked)
        req.chunked(true);
    start_upstream(false);
}

// ---- the upstream exchange -----------------------------------------------------------------

void session::start_upstream(bool fresh_connection) {
    upstream_started_ = std::chrono::steady_clock::now();
    auto handler = [self = shared_from_this()](
                       beast::error_code ec, std::unique_ptr<proxy::upstream_connection> conn,
                       bool reused) { self->on_upstream(ec, std::move(conn), reused); };
    if (fresh_connection) {
        owner_.pool().connect_new(std::move(handler));
    } else {
        // A stale pooled connection fails before any response byte; retry_on_fresh_connection
        // then retries exactly these requests, so they skip the pool's liveness probe.
        const bool retryable = is_idempotent(parser_->get().method()) && !request_has_body_;
        owner_.pool().acquire(std::move(handler), !retryable);
    }
}

void session::on_upstream(beast::error_code ec, std::unique_ptr<proxy::upstream_connection> conn,
                          bool reused) {
    if (closed_) {
        if (conn)
            conn->close();
        return;
    }
    if (ec)
        return upstream_failed(ec, "connect");
    upstream_ = std::move(conn);
    upstream_reused_ = reused;
    if (!exchange_)
        exchange_ = owner_.take_exchange();
    request_sent_ = false;
    upstream_keep_alive_ = false;
    if (!body_buffer_)
        body_buffer_ = owner_.take_buffer();
    exchange_->to_upstream.start(parser_->get());
    upstream_->expires_after(owner_.context().settings.upstream.idle_timeout);
    upstream_->write(exchange_->to_upstream.prepare(nullptr, 0, !request_has_body_),
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         self->on_write_request_header(ec);
                     });
}

bool session::retry_on_fresh_connection(beast::error_code ec) {
    // A pooled connection the upstream already closed fails before any response byte. Only
    // then, only once, and only when nothing of the body was consumed, is a retry safe.
    if (!upstream_reused_ || retried_ || request_body_started_ ||
        !is_idempotent(parser_->get().method()))
        return false;
    if (ec != asio::error::eof && ec != http::error::end_of_stream &&
        ec != asio::error::connection_reset && ec != asio::error::broken_pipe)
        return false;
    retried_ = true;
    upstream_->close();
    upstream_.reset();
    exchange_->response_parser.reset();
    start_upstream(true);
    return true;
}

void session::on_write_request_header(beast::error_code ec) {
    if (closed_)
        return;
    if (ec) {
        if (retry_on_fresh_connection(ec))
            return;
        return upstream_failed(ec, "write request header");
    }
    if (!request_has_body_) {
        request_sent_ = true;
        return do_read_response_header();
    }
    if (expect_continue_ && client_version_ >= 11) {
        expect_continue_ = false;
        auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
        stream_.expires_after(owner_.context().settings.upstream.idle_timeout);
        http::async_write(stream_, *cont,
                          [self = shared_from_this(), cont](beast::error_code ec, std::size_t) {
                              self->on_write_continue(ec);
                          });
        return;
    }
    do_read_request_body();
}

void session::on_write_continue(beast::error_code ec) {
    if (ec) {
        fail(ec, "write 100-continue");
        return close();
    }
    do_read_request_body();
}

void session::do_read_request_body() {
    request_body_started_ = true;
    auto& body = parser_->get().body();
    body.data = body_buffer_.get();
    body.size = worker::body_buffer_size;
    stream_.expires_after(owner_.context().settings.upstream.idle_timeout);
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_read_request_body(ec);
                          });
}

void session::on_read_request_body(beast::error_code ec) {
    if (ec == http::error::need_buffer)
        ec = {};
    if (ec) {
        fail(ec, "read request body");
        if (ec == http::error::body_limit) {
            upstream_->close();
            upstream_.reset();
            client_keep_alive_ = false;
            return send_local(http::status::payload_too_large, "payload_too_large",
                              "request body exceeds the configured maximum");
        }
        if (ec != beast::error::timeout && ec != asio::error::eof &&
            ec != http::error::partial_message && ec != asio::error::connection_reset) {
            // A framing error (bad chunk) is the client's fault: tell it, then close.
            upstream_->close();
            upstream_.reset();
            client_keep_alive_ = false;
            return send_local(http::status::bad_request, "bad_request", "malformed request body");
        }
        return close();
    }
    auto& body = parser_->get().body();
    body.size = worker::body_buffer_size - body.size;
    // A read can end on chunk framing alone: nothing to send yet.
    if (body.size == 0 && !parser_->is_done())
        return do_read_request_body();
    body.data = body.size ? body_buffer_.get() : nullptr;
    body.more = !parser_->is_done();
    do_write_request_body();
}

void session::do_write_request_body() {
    const auto& body = parser_->get().body();
    upstream_->expires_after(owner_.context().settings.upstream.idle_timeout);
    upstream_->write(exchange_->to_upstream.prepare(body.data, body.size, !body.more),
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         self->on_write_request_body(ec);
                     });
}

void session::on_write_request_body(beast::error_code ec) {
    if (closed_)
        return;
    if (ec)
        return upstream_failed(ec, "write request body");
    if (exchange_->to_upstream.last_sent()) {
        request_sent_ = true;
        return do_read_response_header();
    }
    do_read_request_body();
}

void session::do_read_response_header() {
    watch_client();
    exchange_->response_parser.emplace();
    exchange_->response_parser->body_limit(boost::none);
    exchange_->response_parser->header_limit(64 * 1024);
    if (parser_->get().method() == http::verb::head)
        exchange_->response_parser->skip(true);
    upstream_->expires_after(owner_.context().settings.upstream.response_timeout);
    upstream_->read_header(*exchange_->response_parser,
                           [self = shared_from_this()](beast::error_code ec, std::size_t) {
                               self->on_read_response_header(ec);
                           });
}

void session::on_read_response_header(beast::error_code ec) {
    if (closed_)
        return;
    if (ec) {
        if (retry_on_fresh_connection(ec))
            return;
        return upstream_failed(ec, "read response header");
    }
    auto& res = exchange_->response_parser->get();
    // Interim responses (100 Continue, 103 Early Hints) are not relayed; wait for the final one.
    if (res.result_int() >= 100 && res.result_int() < 200 &&
        res.result() != http::status::switching_protocols)
        return do_read_response_header();
    upstream_time_ = std::chrono::steady_clock::now() - upstream_started_;

    upstream_keep_alive_ = res.keep_alive();
    const bool upstream_chunked = res.chunked();
    const bool has_length = res.has_content_length();
    // One value of each limit field: the proxy's replaces the upstream's (whose Retry-After
    // stays when the proxy sets none).
    boost::container::static_vector<std::string_view, std::size(limit::rate_limit_field_names)>
        replaced;
    if (limit_headers_) {
        for (const auto name : limit::rate_limit_field_names) {
            if (limit_headers_->sets(name))
                replaced.push_back(name);
        }
    }
    proxy::rewrite_response(res, replaced);
    owner_.context().load->record(
        owner_.index(), res.result_int() >= 500,
        std::chrono::duration_cast<std::chrono::microseconds>(upstream_time_));
    const unsigned version = client_version_;
    res.version(version);
    const bool body_expected = !exchange_->response_parser->is_done() || has_length;
    if (has_length) {
        // Content-Length stays as the upstream sent it.
    } else if (body_expected || upstream_chunked) {
        if (version >= 11) {
            res.chunked(true);
        } else {
            client_keep_alive_ = false;  // HTTP/1.0: the body ends when the connection does
        }
    }
    res.keep_alive(client_keep_alive_ && !draining_);
    status_ = res.result_int();

    const bool bodiless = parser_->get().method() == http::verb::head || status_ < 200 ||
                          status_ == 204 || status_ == 304;
    exchange_->to_client.start(res, bodiless, limit_lines(limit_headers_, limit_lines_));
    const bool done = exchange_->response_parser->is_done();
    if (!done && upstream_->buffered() > 0) {
        // The first body bytes came with the header: read them (no wait, they are buffered)
        // and send header and body in one write instead of two.
        return do_read_response_body();
    }
    do_write_response(nullptr, 0, done);
}

void session::do_read_response_body() {
    auto& body = exchange_->response_parser->get().body();
    body.data = body_buffer_.get();
    body.size = worker::body_buffer_size;
    upstream_->expires_after(owner_.context().settings.upstream.idle_timeout);
    upstream_->read_some(*exchange_->response_parser,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             self->on_read_response_body(ec);
                         });
}

void session::on_read_response_body(beast::error_code ec) {
    if (closed_)
        return;
    if (ec == http::error::need_buffer)
        ec = {};
    if (ec) {
        // The status line is already out: all that is left is to end the response short,
        // so the client sees a truncated body rather than waiting forever.
        fail(ec, "read response body");
        spdlog::warn("upstream response body ended early: {}", ec.message());
        log_access(status_);
        if (!exchange_->to_client.header_sent()) {
            // The header was held back for the first body bytes: send it as it would have
            // been, then end the response short.
            stream_.expires_after(owner_.context().settings.upstream.idle_timeout);
            return asio::async_write(
                stream_, exchange_->to_client.prepare(nullptr, 0, false),
                [self = shared_from_this()](beast::error_code, std::size_t) { self->close(); });
        }
        return close();
    }
    const auto size = worker::body_buffer_size - exchange_->response_parser->get().body().size;
    const bool done = exchange_->response_parser->is_done();
    if (size == 0 && !done && exchange_->to_client.header_sent())
        return do_read_response_body();
    // With nothing of the body yet after all, the held-back header goes out alone.
    do_write_response(size ? body_buffer_.get() : nullptr, size, done);
}

void session::do_write_response(const void* data, std::size_t size, bool last) {
    stream_.expires_after(owner_.context().settings.upstream.idle_timeout);
    asio::async_write(stream_, exchange_->to_client.prepare(data, size, last),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          self->on_write_response(ec);
                      });
}

void session::on_write_response(beast::error_code ec) {
    if (ec) {
        fail(ec, "write response");
        log_access(status_);
        return close();
    }
    if (exchange_->to_client.last_sent())
        return finish_exchange();
    do_read_response_body();
}

void session::finish_exchange() {
    log_access(status_);
    // The response to the client carries the client's keep-alive now; the upstream's own was
    // kept aside when its header arrived.
    const bool upstream_reusable =
        upstream_keep_alive_ && exchange_->response_parser->is_done() && request_sent_;
    exchange_->response_parser.reset();
    if (upstream_reusable) {
        owner_.pool().release(std::move(upstream_));
    } else {
        upstream_->close();
        upstream_.reset();
    }
    next_request_or_close(client_keep_alive_ && !draining_);
}

void session::upstream_failed(beast::error_code ec, const char* what) {
    if (closed_)
        return;
    const bool timed_out = ec == beast::error::timeout;
    spdlog::warn("upstream {} failed: {}", what, ec.message());
    owner_.context().load->record(owner_.index(), true,
                                  std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::steady_clock::now() - upstream_started_));
    if (upstream_) {
        upstream_->close();
        upstream_.reset();
    }
    owner_.return_exchange(std::move(exchange_));
    // The rest of the client's body is unread: this connection cannot carry another request.
    if (!parser_->is_done())
        client_keep_alive_ = false;
    if (timed_out)
        return send_local(http::status::gateway_timeout, "gateway_timeout",
                          "the upstream did not answer in time");
    send_local(http::status::bad_gateway, "bad_gateway", "the upstream could not be reached");
}

// ---- local replies -------------------------------------------------------------------------

void session::send_local(http::status status, std::string_view error, std::string_view message) {
    send_json(status, json_error(error, message));
}

void session::send_json(http::status status, std::string body) {
    if (closed_)
        return;
    const unsigned version = parser_ && parser_->is_header_done() ? client_version_ : 11;
    // A request whose body was never read leaves unknown bytes on the wire: close after.
    const bool body_unread = parser_ && parser_->is_header_done() && !parser_->is_done();
    const bool keep_alive = client_keep_alive_ && !body_unread && !draining_;
    local_response_ = {};
    local_response_.result(status);
    local_response_.version(version);
    local_response_.set(http::field::server, "ratelimit-proxy");
    local_response_.set(http::field::content_type, "application/json");
    local_response_.set(http::field::cache_control, "no-store");
    if (status == http::status::unauthorized)
        local_response_.set(http::field::www_authenticate, "Bearer");
    if (status == http::status::method_not_allowed)
        local_response_.set(http::field::allow,
                            path_ == "/register" ? "POST"
                            : path_.rfind(owner_.context().settings.server.api_prefix, 0) == 0
                                ? "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
                                : "GET, HEAD");
    if (!retry_after_.empty()) {
        local_response_.set(http::field::retry_after, retry_after_);
        retry_after_.clear();
    }
    local_response_.body() = std::move(body);
    local_response_.keep_alive(keep_alive);
    local_response_.prepare_payload();
    // To HEAD: Content-Length stays (it describes the GET answer), the body is not sent.
    const bool head =
        parser_ && parser_->is_header_done() && parser_->get().method() == http::verb::head;
    if (!exchange_)
        exchange_ = owner_.take_exchange();
    exchange_->to_client.start(local_response_, head, limit_lines(limit_headers_, limit_lines_));
    status_ = static_cast<unsigned>(status);
    log_access(status_);
    stream_.expires_after(owner_.context().settings.server.idle_timeout);
    const auto& text = local_response_.body();
    asio::async_write(stream_, exchange_->to_client.prepare(text.data(), text.size(), true),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          self->on_write_local(ec);
                      });
}

void session::on_write_local(beast::error_code ec) {
    if (ec) {
        fail(ec, "write");
        return close();
    }
    const bool keep_alive = local_response_.keep_alive();
    local_response_ = {};  // its fields and body are not needed while idle
    next_request_or_close(keep_alive);
}

// While the upstream works on a response, nothing reads from the client, so a client that
// gives up would go unnoticed until the response is written. Waiting for the socket to turn
// readable notices at once (then the upstream request is cancelled by closing it); bytes of
// a pipelined next request that arrive meanwhile are kept for the parser. A wait rather than
// a read: a read would first try the socket and fail, one wasted system call per request.
void session::watch_client() {
    if (watching_ || closed_)
        return;
    watching_ = true;
    stream_.socket().async_wait(
        tcp::socket::wait_read,
        [self = shared_from_this()](beast::error_code ec) { self->on_client_readable(ec); });
}

void session::on_client_readable(beast::error_code ec) {
    std::size_t n = 0;
    if (!ec && !closed_) {
        // The socket is non-blocking: this read never waits.
        n = stream_.socket().receive(asio::buffer(watch_buffer_), {}, ec);
        // Readable, then not after all: no bytes and no error, so the watch starts again.
        if (ec == asio::error::would_block || ec == asio::error::try_again)
            ec = {};
    }
    on_watch_client(ec, n);
}

void session::on_watch_client(beast::error_code ec, std::size_t n) {
    watching_ = false;
    if (n > 0) {
        auto dst = buffer_.prepare(n);
        std::memcpy(dst.data(), watch_buffer_.data(), n);
        buffer_.commit(n);
    }
    if (closed_)
        return;
    if (resume_keep_alive_) {
        const bool keep_alive = *resume_keep_alive_;
        resume_keep_alive_.reset();
        return next_request_or_close(keep_alive);
    }
    if (ec == asio::error::operation_aborted)
        return;
    if (ec) {
        spdlog::debug("downstream {}: client went away while waiting: {}", client_address_,
                      ec.message());
        if (status_ == 0)
            log_access(499);  // nginx's "client closed request"
        return close();
    }
    if (buffer_.size() < owner_.context().settings.server.max_header_bytes)
        watch_client();
}

void session::next_request_or_close(bool keep_alive) {
    if (watching_) {
        // Wait for the watch read to hand over any bytes it has before the parser reads.
        resume_keep_alive_ = keep_alive;
        beast::error_code ec;
        stream_.socket().cancel(ec);
        return;
    }
    if (!keep_alive) {
        // Half-close so the client reads everything sent before seeing the end.
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        return linger();
    }
    if (body_buffer_)
        owner_.return_buffer(std::move(body_buffer_));
    do_read_header();
}

// Closing a socket with unread bytes in its receive queue sends a reset, and a client still
// uploading then loses the answer it was sent (a 401 or 413 shows up as "broken pipe"). So
// read and drop what the client still sends, for a short while, before closing.
void session::linger() {
    if (closed_)
        return;
    if (!lingering_) {
        lingering_ = true;
        stream_.expires_after(linger_time);
    }
    if (!body_buffer_)
        body_buffer_ = owner_.take_buffer();
    stream_.async_read_some(asio::buffer(body_buffer_.get(), worker::body_buffer_size),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                if (ec)
                                    return self->close();
                                self->linger();
                            });
}

void session::log_access(unsigned status) {
    const auto upstream_ms =
        std::chrono::duration_cast<std::chrono::microseconds>(upstream_time_).count() / 1000.0;
    spdlog::info("{} {} {} {} decision={} upstream_ms={:.1f} token={}", client_address_, method_,
                 path_, status, decision_label_, upstream_ms,
                 identity_.id.empty() ? "-" : identity_.id.substr(0, 8));
}

}  // namespace ratelimit_proxy::server
