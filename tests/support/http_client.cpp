#include "http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <stdexcept>

namespace rlp_test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string http_response::header(std::string_view name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string{} : std::string(it->value());
}

bool http_response::has_header(std::string_view name) const {
    return headers.find(name) != headers.end();
}

std::size_t http_response::header_count(std::string_view name) const {
    return headers.count(name);
}

std::string http_response::headers_text() const {
    std::string out;
    for (const auto& f : headers) {
        out += std::string(f.name_string());
        out += ": ";
        out += std::string(f.value());
        out += '\n';
    }
    return out;
}

nlohmann::json http_response::json() const {
    return nlohmann::json::parse(body);
}

http_connection::http_connection(std::uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout), stream_(ioc_) {
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), port);
    auto ec = run([&](auto handler) { stream_.async_connect(ep, handler); }, timeout_);
    if (ec)
        throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) +
                                 " failed: " + ec.message());
    stream_.socket().set_option(tcp::no_delay(true));
}

http_connection::~http_connection() {
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
}

template <class Start>
boost::system::error_code http_connection::run(Start&& start, std::chrono::milliseconds timeout) {
    boost::system::error_code result = net::error::would_block;
    stream_.expires_after(timeout);
    start([&](boost::system::error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run();
    stream_.expires_never();
    return result;
}

void http_connection::send_raw(std::string_view bytes) {
    auto ec = run(
        [&](auto handler) {
            net::async_write(
                stream_, net::buffer(bytes.data(), bytes.size()),
                [handler](boost::system::error_code e, std::size_t n) mutable { handler(e, n); });
        },
        timeout_);
    if (ec)
        throw std::runtime_error("send failed: " + ec.message());
}

namespace {
template <class Parser>
http_response to_response(Parser& parser) {
    http_response r;
    auto& msg = parser.get();
    r.status = msg.result_int();
    for (const auto& f : msg.base())
        r.headers.insert(f.name_string(), f.value());
    r.keep_alive = msg.keep_alive();
    return r;
}
}  // namespace

http_response http_connection::read_response(bool head_request) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    parser.header_limit(1024 * 1024);
    if (head_request)
        parser.skip(true);
    auto ec =
        run([&](auto handler) { http::async_read(stream_, buffer_, parser, handler); }, timeout_);
    if (ec)
        throw std::runtime_error("reading response failed: " + ec.message());
    http_response r = to_response(parser);
    r.body = std::move(parser.get().body());
    return r;
}

http_response http_connection::read_response_streaming(
    const std::function<void(std::string_view)>& on_data) {
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    parser.header_limit(1024 * 1024);
    auto ec = run([&](auto handler) { http::async_read_header(stream_, buffer_, parser, handler); },
                  timeout_);
    if (ec)
        throw std::runtime_error("reading response header failed: " + ec.message());
    std::vector<char> buf(64 * 1024);
    while (!parser.is_done()) {
        parser.get().body().data = buf.data();
        parser.get().body().size = buf.size();
        ec = run([&](auto handler) { http::async_read_some(stream_, buffer_, parser, handler); },
                 timeout_);
        if (ec == http::error::need_buffer)
            ec = {};
        if (ec)
            throw std::runtime_error("reading response body failed: " + ec.message());
        std::size_t n = buf.size() - parser.get().body().size;
        if (n)
            on_data(std::string_view(buf.data(), n));
    }
    return to_response(parser);
}

bool http_connection::wait_for_close(std::chrono::milliseconds timeout, std::string* received) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    if (received && buffer_.size()) {
        auto d = buffer_.data();
        received->append(static_cast<const char*>(d.data()), d.size());
    }
    buffer_.consume(buffer_.size());
    char tmp[4096];
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return false;
        std::size_t got = 0;
        auto ec = run(
            [&](auto handler) {
                stream_.async_read_some(
                    net::buffer(tmp),
                    [handler, &got](boost::system::error_code e, std::size_t n) mutable {
                        got = n;
                        handler(e, n);
                    });
            },
            left);
        if (received && got)
            received->append(tmp, got);
        if (ec == beast::error::timeout)
            return false;
        if (ec)
            return true;  // eof, reset, ...
    }
}

std::string http_connection::read_all_until_close(std::chrono::milliseconds timeout) {
    std::string out;
    wait_for_close(timeout, &out);
    return out;
}

http_response http_connection::request(http::verb method, const std::string& target,
                                       const header_list& headers, const std::string& body) {
    std::string req = std::string(http::to_string(method)) + " " + target + " HTTP/1.1\r\n";
    bool has_host = false, has_length = false;
    for (auto& [k, v] : headers) {
        if (beast::iequals(k, "host"))
            has_host = true;
        if (beast::iequals(k, "content-length") || beast::iequals(k, "transfer-encoding"))
            has_length = true;
        req += k + ": " + v + "\r\n";
    }
    if (!has_host)
        req += "Host: 127.0.0.1:" + std::to_string(port_) + "\r\n";
    if (!has_length && (!body.empty() || method == http::verb::post || method == http::verb::put ||
                        method == http::verb::patch))
        req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n";
    req += body;
    send_raw(req);
    return read_response(method == http::verb::head);
}

http_response http_request(std::uint16_t port, http::verb method, const std::string& target,
                           const header_list& headers, const std::string& body,
                           std::chrono::milliseconds timeout) {
    http_connection c(port, timeout);
    return c.request(method, target, headers, body);
}

http_response raw_request(std::uint16_t port, std::string_view bytes,
                          std::chrono::milliseconds timeout) {
    http_connection c(port, timeout);
    c.send_raw(bytes);
    return c.read_response();
}

http_response raw_exchange(std::uint16_t port, std::string_view bytes, bool* closed_after,
                           std::optional<std::string>* failure) {
    http_connection c(port, std::chrono::seconds(5));
    try {
        c.send_raw(bytes);
    } catch (const std::exception&) {
        // The proxy may answer and close before it has read everything; read the answer.
    }
    http_response r;
    try {
        r = c.read_response();
    } catch (const std::exception& e) {
        if (failure)
            *failure = e.what();
    }
    if (closed_after)
        *closed_after = c.wait_for_close(std::chrono::seconds(3));
    return r;
}

}  // namespace rlp_test
