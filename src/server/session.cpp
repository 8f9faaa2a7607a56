#include "session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/container/static_vector.hpp>
#include <cstring>

#include "ratelimit_proxy/common/cidr.hpp"
#include "ratelimit_proxy/common/http_text.hpp"
#include "ratelimit_proxy/metering/request_info.hpp"
#include "ratelimit_proxy/proxy/forwarded.hpp"
#include "ratelimit_proxy/proxy/header_rewrite.hpp"
#include "ratelimit_proxy/proxy/upstream_target.hpp"
#include "ratelimit_proxy/server/access_log.hpp"
#include "worker.hpp"

namespace ratelimit_proxy::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

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

// The limit headers and X-Request-Id go into the serialized header as text (see
// outgoing_message); any of the same names from the upstream are dropped first.
std::string_view response_lines(const limit::rate_limit_headers* h, std::string_view request_id,
                                std::string_view upstream_request_id, std::string& lines) {
    lines.clear();
    if (h)
        h->append_lines(lines);
    lines.append("X-Request-Id: ").append(request_id).append("\r\n");
    if (!upstream_request_id.empty())
        lines.append("X-Upstream-Request-Id: ").append(upstream_request_id).append("\r\n");
    return lines;
}

// Ids generated on this worker thread: seeded once, then no system call per request.
proxy::request_id_generator& thread_request_ids() {
    thread_local proxy::request_id_generator ids;
    return ids;
}

double millis(std::chrono::steady_clock::duration d) {
    return static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(d).count()) /
           1000.0;
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
    return beast::iequals(common::trim_ows(first->value()), "chunked");
}

}  // namespace

session::session(socket_type&& socket, worker& owner)
    : owner_(owner), stream_(std::move(socket)), admission_(owner.admission()) {
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
    admission_.end_request();
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
    admission_.release();
    // A metered body may have been megabytes: an idle connection keeps none of it.
    if (request_body_.capacity() > 64 * 1024)
        std::string().swap(request_body_);
    if (filtered_.capacity() > 64 * 1024)
        std::string().swap(filtered_);
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

void session::request_state::reset() {
    keep_alive = false;
    version = 11;
    expect_continue = false;
    has_body = false;
    body_started = false;
    status = 0;
    retried = false;
    upstream_reused = false;
    sent = false;
    upstream_keep_alive = false;
    upstream_time = {};
    request_id_size = 0;
    upstream_request_id_size = 0;
    has_trace = false;
    started = std::chrono::steady_clock::now();
    from_upstream = false;
    bytes_in = 0;
    bytes_out = 0;
    body_read = false;
}

void session::settle_correlation(const http::request_header<>* req) {
    auto& r = request_;
    // Only a trusted proxy's id is taken: anyone else could pick ids that collide with
    // other requests' in the logs, or smuggle text into them.
    const auto& trusted = owner_.context().trusted_proxies;
    if (req && !trusted.empty() && trusted.contains(common::unmapped(peer_address_))) {
        const std::string_view sent = (*req)["X-Request-Id"];
        if (proxy::valid_request_id(sent)) {
            std::copy(sent.begin(), sent.end(), r.request_id.begin());
            r.request_id_size = sent.size();
        }
    }
    if (r.request_id_size == 0) {
        std::array<char, proxy::request_id_generator::size> id;
        thread_request_ids().next(id);
        std::copy(id.begin(), id.end(), r.request_id.begin());
        r.request_id_size = id.size();
    }
    if (!req)
        return;
    // Exactly one valid traceparent: several are invalid by the W3C rules.
    auto [first, last] = req->equal_range("traceparent");
    if (first != last && std::next(first) == last && proxy::valid_traceparent(first->value())) {
        const auto id = proxy::trace_id_of(first->value());
        std::copy(id.begin(), id.end(), r.trace_id.begin());
        r.has_trace = true;
    }
}

void session::on_read_header(beast::error_code ec) {
    idle_ = false;
    request_.reset();
    admission_.reset();
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
        request_.method = "-";
        request_.path = "-";
        request_.client_text = client_address_;
        settle_correlation(nullptr);
        if (ec == http::error::header_limit)
            return send_local(http::status::request_header_fields_too_large, "header_too_large",
                              "request header exceeds the configured maximum");
        if (ec == http::error::body_limit)
            return send_local(http::status::payload_too_large, "payload_too_large",
                              "request body exceeds the configured maximum");
        return send_local(http::status::bad_request, "bad_request", "malformed HTTP request");
    }

    auto& req = parser_->get();
    request_.method.assign(req.method_string());
    const std::string_view target = req.target();
    request_.path.assign(target.substr(0, target.find('?')));
    request_.keep_alive = req.keep_alive();
    request_.version = req.version();
    request_.has_body = !parser_->is_done();
    const auto& trusted = owner_.context().trusted_proxies;
    request_.client = proxy::resolve_client_address(peer_address_, req, trusted);
    if (trusted.empty()) {
        request_.client_text = client_address_;
    } else {
        request_.client_text = request_.client.to_string();
    }
    settle_correlation(&req);
    if (!acceptable_framing(req)) {
        request_.keep_alive = false;
        return send_local(http::status::bad_request, "bad_request",
                          "unsupported Transfer-Encoding: only a single \"chunked\" is accepted");
    }
    auto& facts = request_.facts;
    facts.method = req.method();
    facts.method_text = request_.method;
    facts.path = request_.path;
    facts.headers = &req;
    facts.client = &request_.client;
    facts.client_text = request_.client_text;
    admission_.decide(facts, shared_from_this());
}

void session::on_verdict(const verdict& v) {
    if (closed_)
        return;
    if (v.what == verdict::kind::forward)
        return forward();
    if (v.what == verdict::kind::read_body)
        return read_whole_body();
    write_local(v);
}

// ---- a body read whole before the verdict (metered requests) -------------------------------

void session::read_whole_body() {
    request_body_.clear();
    request_.body_read = true;
    auto& req = parser_->get();
    if (!request_.has_body)
        return admission_.body_ready(request_body_, shared_from_this());
    // The client waits for a 100 before it sends the body; the upstream gets no Expect then.
    const bool expect_continue = beast::iequals(req[http::field::expect], "100-continue");
    req.erase(http::field::expect);
    if (expect_continue && request_.version >= 11) {
        auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
        stream_.expires_after(owner_.context().settings.upstream.idle_timeout);
        http::async_write(stream_, *cont,
                          [self = shared_from_this(), cont](beast::error_code ec, std::size_t) {
                              if (ec) {
                                  self->fail(ec, "write 100-continue");
                                  return self->close();
                              }
                              self->do_read_request_body();
                          });
        return;
    }
    do_read_request_body();
}

void session::on_read_whole_body(beast::error_code ec) {
    if (ec == http::error::need_buffer)
        ec = {};
    if (ec)
        return client_body_failed(ec);
    const auto size = worker::body_buffer_size - parser_->get().body().size;
    request_body_.append(body_buffer_.get(), size);
    request_.bytes_in += size;
    const auto limit = owner_.context().settings.budget.max_body_bytes;
    if (request_body_.size() > limit) {
        request_.keep_alive = false;
        own_reply_.local(http::status::payload_too_large, "payload_too_large",
                         "the body of a request under a token or money budget is read whole "
                         "before it is sent, and may be at most ");
        own_reply_.message.append(std::to_string(limit)).append(" bytes (budget.max_body_bytes)");
        own_reply_.limit_headers = nullptr;
        return write_local(own_reply_);
    }
    if (!parser_->is_done())
        return do_read_request_body();
    admission_.body_ready(request_body_, shared_from_this());
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
    request_.expect_continue = beast::iequals(req[http::field::expect], "100-continue");
    req.erase(http::field::expect);
    const bool chunked = req.chunked();
    proxy::rewrite_request(req, owner_.context().rewrite, client_address_,
                           {.drop_request_id = true, .keep_trace = request_.has_trace});
    req.version(11);
    if (request_.body_read) {
        // Read whole (and maybe rewritten for metering): sent in one piece with its length.
        request_.has_body = !request_body_.empty();
        if (request_.has_body || chunked || req.has_content_length())
            req.content_length(request_body_.size());
        // The usage is read from the response: it must come uncompressed.
        if (admission_.metering().active())
            req.set(http::field::accept_encoding, "identity");
    } else if (chunked) {
        req.chunked(true);
    }
    start_upstream(false);
}

// ---- the upstream exchange -----------------------------------------------------------------

void session::start_upstream(bool fresh_connection) {
    request_.upstream_started = std::chrono::steady_clock::now();
    if (!fresh_connection)
        owner_.metrics().overhead_seconds.observe(
            worker_metrics::seconds(request_.upstream_started - request_.started));
    auto handler = [self = shared_from_this()](
                       beast::error_code ec, std::unique_ptr<proxy::upstream_connection> conn,
                       bool reused) { self->on_upstream(ec, std::move(conn), reused); };
    if (fresh_connection) {
        owner_.pool().connect_new(std::move(handler));
    } else {
        // A stale pooled connection fails before any response byte; retry_on_fresh_connection
        // then retries exactly these requests, so they skip the pool's liveness probe.
        const bool retryable = is_idempotent(parser_->get().method()) && !request_.has_body;
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
    request_.upstream_reused = reused;
    if (!exchange_)
        exchange_ = owner_.take_exchange();
    request_.sent = false;
    request_.upstream_keep_alive = false;
    if (!body_buffer_)
        body_buffer_ = owner_.take_buffer();
    // The buffer of the response's extra lines, free until the response header is in.
    extra_lines_.assign("X-Request-Id: ").append(request_.id()).append("\r\n");
    exchange_->to_upstream.start(parser_->get(), extra_lines_);
    upstream_->expires_after(owner_.context().settings.upstream.idle_timeout);
    upstream_->write(exchange_->to_upstream.prepare(nullptr, 0, !request_.has_body),
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         self->on_write_request_header(ec);
                     });
}

bool session::retry_on_fresh_connection(beast::error_code ec) {
    // A pooled connection the upstream already closed fails before any response byte. Only
    // then, only once, and only when nothing of the body was consumed, is a retry safe.
    if (!request_.upstream_reused || request_.retried || request_.body_started ||
        !is_idempotent(parser_->get().method()))
        return false;
    if (ec != asio::error::eof && ec != http::error::end_of_stream &&
        ec != asio::error::connection_reset && ec != asio::error::broken_pipe)
        return false;
    request_.retried = true;
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
    if (!request_.has_body) {
        request_.sent = true;
        admission_.metering().request_sent();
        return do_read_response_header();
    }
    if (request_.body_read) {
        upstream_->expires_after(owner_.context().settings.upstream.idle_timeout);
        return upstream_->write(
            exchange_->to_upstream.prepare(request_body_.data(), request_body_.size(), true),
            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                self->on_write_request_body(ec);
            });
    }
    if (request_.expect_continue && request_.version >= 11) {
        request_.expect_continue = false;
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
    if (!body_buffer_)
        body_buffer_ = owner_.take_buffer();
    request_.body_started = true;
    auto& body = parser_->get().body();
    body.data = body_buffer_.get();
    body.size = worker::body_buffer_size;
    stream_.expires_after(owner_.context().settings.upstream.idle_timeout);
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (self->request_.body_read)
                                  return self->on_read_whole_body(ec);
                              self->on_read_request_body(ec);
                          });
}

void session::client_body_failed(beast::error_code ec) {
    fail(ec, "read request body");
    if (upstream_) {
        upstream_->close();
        upstream_.reset();
    }
    if (ec == http::error::body_limit) {
        request_.keep_alive = false;
        return send_local(http::status::payload_too_large, "payload_too_large",
                          "request body exceeds the configured maximum");
    }
    if (ec != beast::error::timeout && ec != asio::error::eof &&
        ec != http::error::partial_message && ec != asio::error::connection_reset) {
        // A framing error (bad chunk) is the client's fault: tell it, then close.
        request_.keep_alive = false;
        return send_local(http::status::bad_request, "bad_request", "malformed request body");
    }
    close();
}

void session::on_read_request_body(beast::error_code ec) {
    if (ec == http::error::need_buffer)
        ec = {};
    if (ec)
        return client_body_failed(ec);
    auto& body = parser_->get().body();
    body.size = worker::body_buffer_size - body.size;
    request_.bytes_in += body.size;
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
        request_.sent = true;
        admission_.metering().request_sent();
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
    request_.upstream_time = std::chrono::steady_clock::now() - request_.upstream_started;
    request_.from_upstream = true;
    auto& metrics = owner_.metrics();
    metrics.upstream_header_seconds.observe(worker_metrics::seconds(request_.upstream_time));
    if (res.result() == http::status::too_many_requests)
        metrics.upstream_throttled.add();
    metrics.upstream_quota_seen.observe(res);

    request_.upstream_keep_alive = res.keep_alive();
    const bool upstream_chunked = res.chunked();
    const bool has_length = res.has_content_length();
    // One value of each limit field: the proxy's replaces the upstream's (whose Retry-After
    // stays when the proxy sets none).
    const auto* limit_headers = admission_.result().limit_headers;
    boost::container::static_vector<std::string_view, std::size(limit::rate_limit_field_names) + 1>
        replaced{"X-Request-Id"};
    if (limit_headers) {
        for (const auto name : limit::rate_limit_field_names) {
            if (limit_headers->sets(name))
                replaced.push_back(name);
        }
    }
    // Ours replaces the upstream's X-Request-Id; the upstream's (what its support asks for)
    // is kept beside it.
    if (const std::string_view theirs = res["X-Request-Id"]; proxy::valid_request_id(theirs)) {
        std::copy(theirs.begin(), theirs.end(), request_.upstream_request_id.begin());
        request_.upstream_request_id_size = theirs.size();
    }
    proxy::rewrite_response(res, replaced);
    owner_.context().load->record(
        owner_.index(), res.result_int() >= 500,
        std::chrono::duration_cast<std::chrono::microseconds>(request_.upstream_time));
    const unsigned version = request_.version;
    res.version(version);
    const bool body_expected = !exchange_->response_parser->is_done() || has_length;
    auto& metering = admission_.metering();
    bool body_rewritten = false;
    if (metering.active()) {
        const bool event_stream =
            beast::iequals(res[http::field::content_type].substr(0, 17), "text/event-stream");
        metering.response_started(res.result_int(), event_stream);
        // Dropping the usage chunk the client did not ask for changes the body's length.
        body_rewritten = metering.reader() && metering.reader()->rewrites();
        if (body_rewritten && has_length)
            res.erase(http::field::content_length);
    }
    if (has_length && !body_rewritten) {
        // Content-Length stays as the upstream sent it.
    } else if (body_expected || upstream_chunked) {
        if (version >= 11) {
            res.chunked(true);
        } else {
            request_.keep_alive = false;  // HTTP/1.0: the body ends when the connection does
        }
    }
    res.keep_alive(request_.keep_alive && !draining_);
    request_.status = res.result_int();

    const bool bodiless = parser_->get().method() == http::verb::head || request_.status < 200 ||
                          request_.status == 204 || request_.status == 304;
    exchange_->to_client.start(
        res, bodiless,
        response_lines(limit_headers, request_.id(), request_.upstream_id(), extra_lines_));
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
        log_access(request_.status);
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
    auto size = worker::body_buffer_size - exchange_->response_parser->get().body().size;
    const bool done = exchange_->response_parser->is_done();
    const char* data = body_buffer_.get();
    if (auto* reader = admission_.metering().reader()) {
        // The usage is read on the way through; what the client gets may leave out the
        // usage chunk it did not ask for.
        admission_.metering().count_response_bytes(size);
        if (!reader->rewrites()) {
            reader->scan({data, size});
        } else {
            filtered_.clear();
            reader->feed({data, size}, filtered_);
            if (done)
                reader->finish(filtered_);
            data = filtered_.data();
            size = filtered_.size();
        }
    }
    if (size == 0 && !done && exchange_->to_client.header_sent())
        return do_read_response_body();
    // With nothing of the body yet after all, the held-back header goes out alone.
    do_write_response(size ? data : nullptr, size, done);
}

void session::do_write_response(const void* data, std::size_t size, bool last) {
    request_.bytes_out += size;
    stream_.expires_after(owner_.context().settings.upstream.idle_timeout);
    asio::async_write(stream_, exchange_->to_client.prepare(data, size, last),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          self->on_write_response(ec);
                      });
}

void session::on_write_response(beast::error_code ec) {
    if (ec) {
        fail(ec, "write response");
        log_access(request_.status);
        return close();
    }
    if (exchange_->to_client.last_sent())
        return finish_exchange();
    do_read_response_body();
}

void session::finish_exchange() {
    log_access(request_.status);
    // The response to the client carries the client's keep-alive now; the upstream's own was
    // kept aside when its header arrived.
    const bool upstream_reusable =
        request_.upstream_keep_alive && exchange_->response_parser->is_done() && request_.sent;
    exchange_->response_parser.reset();
    if (upstream_reusable) {
        owner_.pool().release(std::move(upstream_));
    } else {
        upstream_->close();
        upstream_.reset();
    }
    next_request_or_close(request_.keep_alive && !draining_);
}

void session::upstream_failed(beast::error_code ec, const char* what) {
    if (closed_)
        return;
    const bool timed_out = ec == beast::error::timeout;
    if (timed_out)
        owner_.metrics().upstream_timeouts.add();
    spdlog::warn("upstream {} failed: {}", what, ec.message());
    owner_.context().load->record(
        owner_.index(), true,
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                              request_.upstream_started));
    if (upstream_) {
        upstream_->close();
        upstream_.reset();
    }
    owner_.return_exchange(std::move(exchange_));
    // The rest of the client's body is unread: this connection cannot carry another request.
    if (!parser_->is_done())
        request_.keep_alive = false;
    if (timed_out)
        return send_local(http::status::gateway_timeout, "gateway_timeout",
                          "the upstream did not answer in time");
    send_local(http::status::bad_gateway, "bad_gateway", "the upstream could not be reached");
}

// ---- local replies -------------------------------------------------------------------------

void session::send_local(http::status status, std::string_view error, std::string_view message) {
    own_reply_.local(status, error, message);
    own_reply_.limit_headers = admission_.result().limit_headers;
    write_local(own_reply_);
}

void session::write_local(const verdict& v) {
    if (closed_)
        return;
    const bool header_read = parser_ && parser_->is_header_done();
    const unsigned version = header_read ? request_.version : 11;
    // A request whose body was never read leaves unknown bytes on the wire: close after.
    const bool body_unread = header_read && !parser_->is_done();
    build_local_reply(v,
                      {.request_id = request_.id(),
                       .expose_limits = owner_.context().settings.expose_limit_details},
                      version, request_.keep_alive && !body_unread && !draining_, local_response_);
    // To HEAD: Content-Length stays (it describes the GET answer), the body is not sent.
    const bool head = header_read && parser_->get().method() == http::verb::head;
    if (!exchange_)
        exchange_ = owner_.take_exchange();
    exchange_->to_client.start(local_response_, head,
                               response_lines(v.limit_headers, request_.id(), {}, extra_lines_));
    request_.status = static_cast<unsigned>(v.status);
    request_.from_upstream = false;
    if (!head)
        request_.bytes_out += local_response_.body().size();
    log_access(request_.status);
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
        if (request_.status == 0)
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

void session::count_response(unsigned status) {
    auto& metrics = owner_.metrics();
    const auto who = request_.from_upstream ? answered_by::upstream : answered_by::proxy;
    metrics.count_response(admission_.route_slot(), status, who);
    metrics.observe_request(who, std::chrono::steady_clock::now() - request_.started);
}

void session::log_access(unsigned status) {
    // Every request's end passes here (or through close()).
    admission_.end_request();
    count_response(status);
    // Below info (LOG_LEVEL=warn) there is no access line: nothing to gather for it.
    if (!spdlog::default_logger_raw()->should_log(spdlog::level::info))
        return;
    const auto& v = admission_.result();
    const auto& who = admission_.who();
    const bool header_read = parser_ && parser_->is_header_done();
    access_record r;
    r.request_id = request_.id();
    r.trace_id = request_.trace();
    r.upstream_request_id = request_.upstream_id();
    r.method = request_.method;
    r.path = request_.path;
    r.route = v.route;
    r.status = status;
    r.from_upstream = request_.from_upstream;
    r.peer = client_address_;
    r.client = request_.client_text;
    r.token_id = who.id;
    r.tier = who.tier;
    r.decision = v.label;
    if (v.deciding.source) {
        r.policy = v.deciding.source->name;
        r.has_remaining = true;
        r.remaining = v.deciding.remaining;
        r.window_seconds = v.deciding.window_seconds;
    }
    r.duration_ms = millis(std::chrono::steady_clock::now() - request_.started);
    r.upstream_ms = millis(request_.upstream_time);
    r.redis_ms = millis(v.check_time);
    r.bytes_in = request_.bytes_in;
    r.bytes_out = request_.bytes_out;
    if (header_read)
        r.user_agent = parser_->get()[http::field::user_agent];
    log_access_line(r, owner_.context().settings.log_format == "json");
}

}  // namespace ratelimit_proxy::server
