#include "ratelimit_proxy/proxy/upstream_connection.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <sys/socket.h>

namespace ratelimit_proxy::proxy {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// The worker's io_context by its concrete executor type, not any_io_executor: every
// operation and timer would otherwise copy and destroy a type-erased executor.
using tcp_stream =
    beast::basic_stream<tcp, asio::io_context::executor_type, beast::unlimited_rate_policy>;

template <class Stream>
class basic_upstream_connection final : public upstream_connection {
  public:
    template <class... Args>
    explicit basic_upstream_connection(Args&&... args) : stream_(std::forward<Args>(args)...) {}

    Stream& stream() { return stream_; }
    tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

    void expires_after(std::chrono::steady_clock::duration d) override { tcp().expires_after(d); }

    void write(std::span<const asio::const_buffer> buffers, io_handler h) override {
        asio::async_write(stream_, buffers, std::move(h));
    }
    void read_header(response_parser& p, io_handler h) override {
        http::async_read_header(stream_, buffer_, p, std::move(h));
    }
    void read_some(response_parser& p, io_handler h) override {
        http::async_read_some(stream_, buffer_, p, std::move(h));
    }
    void close() override {
        beast::error_code ec;
        tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
        tcp().close();
    }
    bool usable_when_idle(bool probe_socket) override {
        if (!tcp().socket().is_open() || buffer_.size() != 0)
            return false;
        if (!probe_socket)
            return true;
        char probe;
        ssize_t n = ::recv(tcp().socket().native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        // 0: the peer closed. >0: it sent something nobody asked for (e.g. TLS close_notify).
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    std::size_t buffered() const override { return buffer_.size(); }

  private:
    Stream stream_;
    beast::flat_buffer buffer_;
};

using plain_connection = basic_upstream_connection<tcp_stream>;
using tls_connection = basic_upstream_connection<beast::ssl_stream<tcp_stream>>;

bool is_ip_literal(const std::string& host) {
    beast::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

// Owns the resolver and the half-built connection until the connection is ready.
struct connect_op : std::enable_shared_from_this<connect_op> {
    connect_op(asio::io_context& io, ssl::context* tls, upstream_endpoint where,
               std::chrono::milliseconds timeout, connect_handler done)
        : io_(io),
          tls_(tls),
          where_(std::move(where)),
          timeout_(timeout),
          deadline_(std::chrono::steady_clock::now() + timeout),
          resolver_(io),
          resolve_timer_(io),
          done_(std::move(done)) {}

    void start() {
        // The resolver has no deadline of its own.
        resolve_timer_.expires_at(deadline_);
        resolve_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (!ec && !self->resolved_) {
                self->resolve_timed_out_ = true;
                self->resolver_.cancel();
            }
        });
        resolver_.async_resolve(
            where_.host, where_.port,
            [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
                self->on_resolve(ec, std::move(results));
            });
    }

    std::chrono::steady_clock::duration remaining() const {
        auto left = deadline_ - std::chrono::steady_clock::now();
        return left > std::chrono::steady_clock::duration::zero()
                   ? left
                   : std::chrono::steady_clock::duration(std::chrono::milliseconds(1));
    }

    void on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
        resolved_ = true;
        resolve_timer_.cancel();
        if (resolve_timed_out_)
            ec = beast::error::timeout;
        if (ec)
            return done_(ec, nullptr);
        if (where_.tls) {
            auto conn = std::make_unique<tls_connection>(io_, *tls_);
            auto& stream = conn->stream();
            if (!is_ip_literal(where_.host) &&
                !SSL_set_tlsext_host_name(stream.native_handle(), where_.host.c_str())) {
                return done_(beast::error_code(static_cast<int>(::ERR_get_error()),
                                               asio::error::get_ssl_category()),
                             nullptr);
            }
            if (tls_verify_)
                stream.set_verify_callback(ssl::host_name_verification(where_.host));
            tls_conn_ = std::move(conn);
            tls_conn_->expires_after(remaining());
            tls_conn_->tcp().async_connect(
                results, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
                    self->on_tls_connect(ec);
                });
        } else {
            plain_conn_ = std::make_unique<plain_connection>(io_);
            plain_conn_->expires_after(remaining());
            plain_conn_->tcp().async_connect(
                results, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
                    self->on_plain_connect(ec);
                });
        }
    }

    void on_plain_connect(beast::error_code ec) {
        if (ec)
            return done_(ec, nullptr);
        plain_conn_->tcp().socket().set_option(tcp::no_delay(true), ec);
        done_({}, std::move(plain_conn_));
    }

    void on_tls_connect(beast::error_code ec) {
        if (ec)
            return done_(ec, nullptr);
        tls_conn_->tcp().socket().set_option(tcp::no_delay(true), ec);
        tls_conn_->expires_after(remaining());
        tls_conn_->stream().async_handshake(
            ssl::stream_base::client,
            [self = shared_from_this()](beast::error_code ec) { self->on_handshake(ec); });
    }

    void on_handshake(beast::error_code ec) {
        if (ec)
            return done_(ec, nullptr);
        done_({}, std::move(tls_conn_));
    }

    asio::io_context& io_;
    ssl::context* tls_;
    upstream_endpoint where_;
    std::chrono::milliseconds timeout_;
    std::chrono::steady_clock::time_point deadline_;
    tcp::resolver resolver_;
    asio::steady_timer resolve_timer_;
    bool resolved_ = false;
    bool resolve_timed_out_ = false;
    connect_handler done_;
    std::unique_ptr<plain_connection> plain_conn_;
    std::unique_ptr<tls_connection> tls_conn_;
    bool tls_verify_ = true;
};

}  // namespace

void connect_upstream(asio::io_context& io, ssl::context* tls, const upstream_endpoint& where,
                      std::chrono::milliseconds timeout, connect_handler done) {
    auto op = std::make_shared<connect_op>(io, tls, where, timeout, std::move(done));
    op->tls_verify_ = tls && SSL_CTX_get_verify_mode(tls->native_handle()) != SSL_VERIFY_NONE;
    op->start();
}

}  // namespace ratelimit_proxy::proxy
