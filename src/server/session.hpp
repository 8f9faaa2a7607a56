#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "ratelimit_proxy/proxy/correlation.hpp"
#include "ratelimit_proxy/proxy/outgoing_message.hpp"
#include "ratelimit_proxy/proxy/upstream_connection.hpp"
#include "ratelimit_proxy/server/admission.hpp"
#include "ratelimit_proxy/server/local_reply.hpp"

namespace ratelimit_proxy::server {

namespace beast = boost::beast;
namespace http = beast::http;

class worker;

// The writers and parser of one upstream exchange; to_client also carries local answers.
struct exchange_state {
    proxy::outgoing_message to_upstream;
    std::optional<proxy::response_parser> response_parser;
    proxy::outgoing_message to_client;
};

// One downstream connection: read a request header, have admission decide, then run its
// verdict: answer locally, or relay to the upstream with both bodies streamed in bounded
// chunks; then the next request on the same connection. Lives on its worker's thread only.
class session : public std::enable_shared_from_this<session>, public verdict_handler {
  public:
    // Bound to the worker's io_context by its concrete executor type: no type-erased
    // any_io_executor is copied, compared or destroyed on every operation.
    using stream_type =
        beast::basic_stream<boost::asio::ip::tcp, boost::asio::io_context::executor_type,
                            beast::unlimited_rate_policy>;
    using socket_type = stream_type::socket_type;

    session(socket_type&& socket, worker& owner);
    ~session();

    void run();
    // Shutdown: an idle connection closes now, a busy one after its current response.
    void drain();

    void on_verdict(const verdict& v) override;
    bool closed() const override { return closed_; }

  private:
    using request_parser = http::request_parser<http::buffer_body>;
    static constexpr std::size_t first_read_size = 4096;

    // What belongs to one request; reset() starts the next, keeping the strings' capacity.
    struct request_state {
        std::string method;
        std::string path;  // without the query
        // The client as resolved through trusted proxies (for per-IP limits).
        boost::asio::ip::address client;
        std::string client_text;
        bool keep_alive = false;
        unsigned version = 11;  // the request's; the upstream always gets 1.1
        bool expect_continue = false;
        bool has_body = false;
        bool body_started = false;
        unsigned status = 0;  // of the response, once known
        bool retried = false;
        bool upstream_reused = false;
        bool sent = false;                 // header and whole body are out to the upstream
        bool body_read = false;            // read whole before the verdict (request_body_)
        bool upstream_keep_alive = false;  // the upstream's response allows reuse
        std::chrono::steady_clock::time_point upstream_started;
        std::chrono::steady_clock::duration upstream_time{};
        request_facts facts;  // what admission reads, filled when the header is in

        // Correlation: the request id (the client's from a trusted proxy, else generated)
        // and the trace-id of a valid traceparent; fixed buffers, nothing allocated.
        std::array<char, proxy::max_request_id_size> request_id{};
        std::size_t request_id_size = 0;
        std::array<char, 32> trace_id{};
        bool has_trace = false;
        // The upstream's own X-Request-Id (OpenAI's, say), passed on as X-Upstream-Request-Id.
        std::array<char, proxy::max_request_id_size> upstream_request_id{};
        std::size_t upstream_request_id_size = 0;
        std::chrono::steady_clock::time_point started;  // the header was in
        bool from_upstream = false;                     // the answer is the upstream's
        std::uint64_t bytes_in = 0;                     // request body bytes
        std::uint64_t bytes_out = 0;                    // response body bytes

        std::string_view id() const { return {request_id.data(), request_id_size}; }
        std::string_view upstream_id() const {
            return {upstream_request_id.data(), upstream_request_id_size};
        }
        std::string_view trace() const {
            return has_trace ? std::string_view(trace_id.data(), trace_id.size())
                             : std::string_view();
        }

        void reset();
    };

    void do_read_header();
    void prepare_parser();
    void on_first_bytes(beast::error_code ec, std::size_t n);
    void read_rest_of_header();
    void parse_header();
    void on_read_header(beast::error_code ec);
    // Sets the request id and trace-id from the header (null: none could be read).
    void settle_correlation(const http::request_header<>* req);
    void forward();
    // A read_body verdict: the whole body into request_body_, then admission::body_ready().
    void read_whole_body();
    void on_read_whole_body(beast::error_code ec);
    // Reading the request body failed: 413, 400 for bad framing, else just close.
    void client_body_failed(beast::error_code ec);

    void start_upstream(bool fresh_connection);
    void on_upstream(beast::error_code ec, std::unique_ptr<proxy::upstream_connection> conn,
                     bool reused);
    void on_write_request_header(beast::error_code ec);
    void on_write_continue(beast::error_code ec);
    void do_read_request_body();
    void on_read_request_body(beast::error_code ec);
    void do_write_request_body();
    void on_write_request_body(beast::error_code ec);
    void do_read_response_header();
    void on_read_response_header(beast::error_code ec);
    void do_read_response_body();
    void on_read_response_body(beast::error_code ec);
    void do_write_response(const void* data, std::size_t size, bool last);
    void on_write_response(beast::error_code ec);
    void finish_exchange();
    bool retry_on_fresh_connection(beast::error_code ec);
    void upstream_failed(beast::error_code ec, const char* what);

    // The session's own local answers (malformed request, upstream failure), beside
    // admission's: both are written by write_local.
    void send_local(http::status status, std::string_view error, std::string_view message);
    void write_local(const verdict& v);
    void on_write_local(beast::error_code ec);
    void next_request_or_close(bool keep_alive);
    void linger();
    void watch_client();
    void on_client_readable(beast::error_code ec);
    void on_watch_client(beast::error_code ec, std::size_t n);
    void close();
    void fail(beast::error_code ec, const char* what);
    void log_access(unsigned status);
    // The request's response in the metrics: by route, status class and who answered.
    void count_response(unsigned status);

    worker& owner_;
    stream_type stream_;
    beast::flat_buffer buffer_;
    std::string client_address_;  // the peer
    boost::asio::ip::address peer_address_;
    std::optional<request_parser> parser_;
    admission admission_;
    request_state request_;
    verdict own_reply_;
    http::response<http::string_body> local_response_;
    // Header lines the proxy adds (limit headers, X-Request-Id), one message at a time;
    // capacity kept.
    std::string extra_lines_;
    // A metered request's body, read whole (and maybe rewritten) before it is sent; and the
    // response bytes as the client gets them when the usage reader drops some.
    std::string request_body_;
    std::string filtered_;

    std::unique_ptr<proxy::upstream_connection> upstream_;
    // Only while an upstream exchange runs: kept off the session so an idle connection is
    // small, and recycled by the worker.
    std::unique_ptr<exchange_state> exchange_;
    std::unique_ptr<char[]> body_buffer_;

    bool watching_ = false;
    // Set while a finished exchange waits for the watch read to hand over its bytes: then
    // next_request_or_close(*resume_keep_alive_). A flag, not a callback: nothing to allocate,
    // and no reference to the session from the session.
    std::optional<bool> resume_keep_alive_;
    std::array<char, 256> watch_buffer_;

    bool lingering_ = false;
    static constexpr std::chrono::seconds linger_time{2};

    bool idle_ = true;  // waiting for the next request header
    bool draining_ = false;
    bool closed_ = false;
};

}  // namespace ratelimit_proxy::server
