#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <span>

namespace boost::asio::ssl {
class context;
}

namespace ratelimit_proxy::proxy {

namespace beast = boost::beast;
namespace http = beast::http;

using response_parser = http::response_parser<http::buffer_body>;
using io_handler = std::function<void(beast::error_code, std::size_t)>;

// One connection to the upstream, plain TCP or TLS behind the same interface, so the relay
// is written once and the Beast stream templates are instantiated in one .cpp only.
// Every operation's deadline is set by the caller just before it (expires_after).
class upstream_connection {
  public:
    virtual ~upstream_connection() = default;

    virtual void expires_after(std::chrono::steady_clock::duration d) = 0;
    // Writes all of the buffers (an outgoing_message's prepare()); they must stay valid
    // until the handler runs.
    virtual void write(std::span<const boost::asio::const_buffer> buffers, io_handler h) = 0;
    virtual void read_header(response_parser& p, io_handler h) = 0;
    virtual void read_some(response_parser& p, io_handler h) = 0;
    virtual void close() = 0;
    // Non-blocking: false if the connection is closed or holds bytes nobody asked for; with
    // probe_socket also when a peek finds the peer closed it or sent something unasked.
    virtual bool usable_when_idle(bool probe_socket) = 0;
    // Bytes already read from the socket and not yet parsed: a read_some completes at once.
    virtual std::size_t buffered() const = 0;

    std::chrono::steady_clock::time_point idle_since;
};

struct upstream_endpoint {
    std::string host;
    std::string port;
    bool tls = false;
};

using connect_handler =
    std::function<void(beast::error_code, std::unique_ptr<upstream_connection>)>;

// Resolves, connects and (for TLS) handshakes with SNI and certificate verification.
// timed_out is set when the connect deadline passed, so the caller can answer 504, not 502.
void connect_upstream(boost::asio::io_context& io, boost::asio::ssl::context* tls,
                      const upstream_endpoint& where, std::chrono::milliseconds timeout,
                      connect_handler done);

}  // namespace ratelimit_proxy::proxy
