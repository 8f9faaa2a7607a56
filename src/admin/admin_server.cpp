// The admin API's HTTP/1.1 transport, in the shape of Beast's async HTTP server example: one
// session per connection, kept alive by its own pending operations (shared_from_this).
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <list>
#include <optional>
#include <stdexcept>

#include "admin_api.hpp"
#include "api_error.hpp"
#include "ratelimit_proxy/admin/control_plane.hpp"
#include "ratelimit_proxy/auth/token.hpp"
#include "ratelimit_proxy/config/host_port.hpp"
#include "ratelimit_proxy/metrics/exposition.hpp"

namespace ratelimit_proxy::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

constexpr std::size_t header_limit = 8 * 1024;
constexpr std::uint64_t body_limit = 1024 * 1024;
constexpr auto header_timeout = std::chrono::seconds(10);
constexpr auto io_timeout = std::chrono::seconds(30);
constexpr auto linger_timeout = std::chrono::seconds(2);
constexpr std::size_t max_sessions = 256;

void fail(beast::error_code ec, const char* what) {
    if (ec == asio::error::operation_aborted || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::broken_pipe)
        return;
    spdlog::debug("admin API: {}: {}", what, ec.message());
}

// What every session of one listener shares: the admin token's digest and the API; or, on
// the metrics listener, no token and no API (GET /metrics alone).
struct shared_state {
    auth::digest token_digest;
    std::shared_ptr<admin_api> api;  // null: the metrics listener
    std::function<std::string()> metrics;
};

constexpr std::string_view json_type = "application/json";

class session : public std::enable_shared_from_this<session> {
  public:
    session(tcp::socket&& socket, std::shared_ptr<const shared_state> state)
        : stream_(std::move(socket)), state_(std::move(state)) {}

    void run() {
        asio::dispatch(stream_.get_executor(),
                       beast::bind_front_handler(&session::do_read, shared_from_this()));
    }

    void close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.close();
    }

  private:
    void do_read() {
        parser_.emplace();
        parser_->header_limit(header_limit);
        parser_->body_limit(body_limit);
        stream_.expires_after(header_timeout);
        http::async_read_header(
            stream_, buffer_, *parser_,
            beast::bind_front_handler(&session::on_read_header, shared_from_this()));
    }

    void on_read_header(beast::error_code ec, std::size_t) {
        if (ec == http::error::end_of_stream)
            return do_close();
        if (ec == http::error::header_limit)
            return send_error(431,
                              error_body("header_too_large",
                                         "the request header is too "
                                         "large"),
                              true);
        if (ec == http::error::body_limit)
            return send_error(413, error_body("body_too_large", "the body is limited to 1 MiB"),
                              true);
        if (ec == http::error::bad_method || ec == http::error::bad_target ||
            ec == http::error::bad_version || ec == http::error::bad_field ||
            ec == http::error::bad_value || ec == http::error::bad_line_ending ||
            ec == http::error::bad_content_length || ec == http::error::bad_transfer_encoding ||
            ec == http::error::bad_chunk)
            return send_error(400, error_body("bad_request", "malformed HTTP request"), true);
        if (ec)
            return fail(ec, "read");

        const auto& req = parser_->get();
        if (!state_->api)
            return answer_metrics_only();
        // Authentication before anything else, even before the body is read.
        auto token = auth::bearer_token(req[http::field::authorization]);
        if (!token || !auth::digests_equal(auth::sha256(*token), state_->token_digest)) {
            // An unread body cannot be skipped safely: answer and close.
            return send_error(401,
                              error_body("unauthorized",
                                         "Authorization: Bearer <ADMIN_TOKEN> "
                                         "is required"),
                              !parser_->is_done(), true);
        }
        if (path_of(req.target()) == "/metrics")
            return answer_metrics();
        if (parser_->is_done())
            return on_request();
        stream_.expires_after(io_timeout);
        http::async_read(stream_, buffer_, *parser_,
                         beast::bind_front_handler(&session::on_read_body, shared_from_this()));
    }

    void on_read_body(beast::error_code ec, std::size_t) {
        if (ec == http::error::body_limit)
            return send_error(413, error_body("body_too_large", "the body is limited to 1 MiB"),
                              true);
        if (ec)
            return fail(ec, "read body");
        on_request();
    }

    void on_request() {
        auto req = parser_->release();
        parser_.reset();
        keep_alive_ = req.keep_alive();
        version_ = req.version();
        api_request r;
        r.method = req.method();
        r.target = std::string(req.target());
        r.content_type = std::string(req[http::field::content_type]);
        r.body = std::move(req.body());
        // No read is pending while the API works: the answer comes back on this thread.
        stream_.expires_never();
        state_->api->handle(std::move(r), [self = shared_from_this()](api_response res) {
            self->send(std::move(res), false, false);
        });
    }

    static std::string_view path_of(std::string_view target) {
        return target.substr(0, target.find('?'));
    }

    // GET /metrics, on either listener; a body is not expected, so an unread one closes.
    void answer_metrics() {
        const auto& req = parser_->get();
        version_ = req.version();
        keep_alive_ = req.keep_alive();
        const bool unread_body = !parser_->is_done();
        if (req.method() != http::verb::get && req.method() != http::verb::head)
            return send_error(405, error_body("method_not_allowed", "use GET /metrics"),
                              unread_body, false, "GET, HEAD");
        if (!state_->metrics)
            return send_error(503, error_body("unavailable", "metrics are not ready yet"),
                              unread_body);
        write(200, metrics::content_type, state_->metrics(), unread_body, false, {},
              req.method() == http::verb::head);
    }

    // The metrics listener: no token, GET /metrics and nothing else.
    void answer_metrics_only() {
        if (path_of(parser_->get().target()) == "/metrics")
            return answer_metrics();
        send_error(404, error_body("not_found", "only GET /metrics is served here"),
                   !parser_->is_done());
    }

    void send_error(unsigned status, json body, bool close, bool unauthorized = false,
                    std::string_view allow = {}) {
        if (parser_)
            version_ = parser_->get().version() ? parser_->get().version() : 11;
        api_response r;
        r.status = status;
        r.body = std::move(body);
        r.allow = std::string(allow);
        send(std::move(r), close, unauthorized);
    }

    void send(api_response r, bool close, bool unauthorized) {
        if (!r.content_type.empty())
            return write(r.status, r.content_type, std::move(r.text), close, unauthorized, r.allow,
                         false);
        write(r.status, json_type,
              r.body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", close,
              unauthorized, r.allow, false);
    }

    void write(unsigned status, std::string_view content_type, std::string body, bool close,
               bool unauthorized, std::string_view allow, bool head) {
        res_.emplace();
        res_->version(version_ == 10 ? 10 : 11);
        res_->result(status);
        res_->set(http::field::server, "ratelimit-proxy-admin");
        res_->set(http::field::content_type, content_type);
        res_->set(http::field::cache_control, "no-store");
        if (!allow.empty())
            res_->set(http::field::allow, allow);
        if (unauthorized)
            res_->set(http::field::www_authenticate, "Bearer realm=\"admin\"");
        res_->body() = std::move(body);
        close_ = close || !keep_alive_;
        res_->keep_alive(!close_);
        res_->prepare_payload();
        // HEAD: the GET answer's Content-Length, no body.
        if (head)
            res_->body().clear();
        stream_.expires_after(io_timeout);
        http::async_write(stream_, *res_,
                          beast::bind_front_handler(&session::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec)
            return fail(ec, "write");
        res_.reset();
        if (close_)
            return do_close();
        keep_alive_ = true;
        do_read();
    }

    // Lingering close: after our FIN, read and drop what the client still sends (an unread
    // body after a 401, say) for a moment, so closing never turns into a reset that could
    // destroy the answer before the client has read it.
    void do_close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        if (ec)
            return;
        stream_.expires_after(linger_timeout);
        do_linger();
    }

    void do_linger() {
        stream_.async_read_some(asio::buffer(linger_buffer_),
                                [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                    self->lingered_ += n;
                                    if (ec || self->lingered_ > body_limit)
                                        return self->stream_.close();
                                    self->do_linger();
                                });
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::shared_ptr<const shared_state> state_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::optional<http::response<http::string_body>> res_;
    std::array<char, 4096> linger_buffer_{};
    std::uint64_t lingered_ = 0;
    unsigned version_ = 11;
    bool keep_alive_ = true;
    bool close_ = false;
};

}  // namespace

class admin_server::impl : public std::enable_shared_from_this<admin_server::impl> {
  public:
    // `what` names the listener in the log and in errors.
    impl(asio::io_context& io, std::string what, std::string bind_address, config::host_port listen,
         std::shared_ptr<shared_state> state)
        : io_(io),
          acceptor_(io),
          retry_(io),
          what_(std::move(what)),
          bind_address_(std::move(bind_address)),
          listen_(std::move(listen)),
          state_(std::move(state)) {}

    // Before start().
    void set_metrics(std::function<std::string()> source) { state_->metrics = std::move(source); }

    void start() {
        const auto endpoint = config::listen_endpoint(listen_);
        beast::error_code ec;
        acceptor_.open(endpoint.protocol(), ec);
        if (!ec)
            acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec)
            acceptor_.bind(endpoint, ec);
        if (!ec)
            acceptor_.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            beast::error_code ignored;
            acceptor_.close(ignored);
            throw std::runtime_error(what_ + " cannot listen on " + bind_address_ + ": " +
                                     ec.message());
        }
        spdlog::info("{} listening on {}", what_, bind_address_);
        asio::dispatch(io_, [self = shared_from_this()] { self->do_accept(); });
    }

    void stop() {
        asio::dispatch(io_, [self = shared_from_this()] {
            self->stopped_ = true;
            beast::error_code ec;
            self->acceptor_.close(ec);
            self->retry_.cancel();
            for (auto& w : self->sessions_)
                if (auto s = w.lock())
                    s->close();
            self->sessions_.clear();
        });
    }

  private:
    void do_accept() {
        if (stopped_)
            return;
        // Sessions live on the control io_context itself (one thread), like the API.
        acceptor_.async_accept(beast::bind_front_handler(&impl::on_accept, shared_from_this()));
    }

    void on_accept(beast::error_code ec, tcp::socket socket) {
        if (stopped_)
            return;
        if (ec) {
            fail(ec, "accept");
            if (ec == asio::error::operation_aborted)
                return;
            // Out of descriptors, say: try again in a moment rather than spin.
            retry_.expires_after(std::chrono::milliseconds(100));
            retry_.async_wait([self = shared_from_this()](beast::error_code e) {
                if (!e)
                    self->do_accept();
            });
            return;
        } else {
            sessions_.remove_if([](const std::weak_ptr<session>& w) { return w.expired(); });
            if (sessions_.size() >= max_sessions) {
                beast::error_code ignored;
                socket.close(ignored);
            } else {
                auto s = std::make_shared<session>(std::move(socket), state_);
                sessions_.push_back(s);
                s->run();
            }
        }
        do_accept();
    }

    asio::io_context& io_;
    tcp::acceptor acceptor_;
    asio::steady_timer retry_;
    std::string what_;
    std::string bind_address_;  // as configured, for the log
    config::host_port listen_;
    std::shared_ptr<shared_state> state_;  // changed only before start()
    std::list<std::weak_ptr<session>> sessions_;
    bool stopped_ = false;
};

admin_server::admin_server(asio::io_context& io, const config::settings& file,
                           control_plane& rules) {
    if (!file.admin.token.empty()) {
        auto state = std::make_shared<shared_state>();
        state->token_digest = auth::sha256(file.admin.token);
        state->api = std::make_shared<admin_api>(io.get_executor(), rules);
        admin_ = std::make_shared<impl>(io, "admin API", file.admin.bind_address, file.admin.listen,
                                        std::move(state));
    }
    if (!file.metrics.bind_address.empty())
        metrics_ = std::make_shared<impl>(io, "metrics", file.metrics.bind_address,
                                          file.metrics.listen, std::make_shared<shared_state>());
}

admin_server::~admin_server() = default;

void admin_server::set_metrics(std::function<std::string()> source) {
    if (admin_)
        admin_->set_metrics(source);
    if (metrics_)
        metrics_->set_metrics(std::move(source));
}

void admin_server::start() {
    if (admin_)
        admin_->start();
    else
        spdlog::warn("admin API disabled: ADMIN_TOKEN not set");
    if (metrics_)
        metrics_->start();
}

void admin_server::stop() {
    if (admin_)
        admin_->stop();
    if (metrics_)
        metrics_->stop();
}

}  // namespace ratelimit_proxy::admin
