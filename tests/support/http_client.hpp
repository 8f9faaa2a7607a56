#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlp_test {

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_response {
    unsigned status = 0;
    boost::beast::http::fields headers;
    std::string body;
    bool keep_alive = false;

    // Value of the first field with this name (case-insensitive), "" when absent.
    std::string header(std::string_view name) const;
    bool has_header(std::string_view name) const;
    std::size_t header_count(std::string_view name) const;
    // Every field as "Name: value\n", for diagnostics and "appears nowhere" checks.
    std::string headers_text() const;
    nlohmann::json json() const;  // throws when the body is not JSON
};

// A blocking HTTP/1.1 client over one TCP connection to 127.0.0.1:port. Every operation is
// bounded by the timeout given to the constructor (or set_timeout); on a timeout the
// operation throws std::runtime_error, so a test never hangs.
class http_connection {
  public:
    explicit http_connection(std::uint16_t port,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~http_connection();
    http_connection(const http_connection&) = delete;
    http_connection& operator=(const http_connection&) = delete;

    void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
    std::uint16_t port() const { return port_; }

    // Sends one request (Host, Content-Length filled in unless given) and reads the response.
    http_response request(boost::beast::http::verb method, const std::string& target,
                          const header_list& headers = {}, const std::string& body = {});

    // Low level, for hand-made and malformed requests.
    void send_raw(std::string_view bytes);
    http_response read_response(bool head_request = false);
    // Reads the response, handing body bytes to on_data as they arrive (body left empty).
    http_response read_response_streaming(const std::function<void(std::string_view)>& on_data);
    // True when the peer closes the connection (EOF or reset) within the timeout; bytes that
    // arrive meanwhile are appended to *received when given.
    bool wait_for_close(std::chrono::milliseconds timeout, std::string* received = nullptr);
    // Reads whatever arrives until EOF or until the timeout passes (no exception).
    std::string read_all_until_close(std::chrono::milliseconds timeout);

  private:
    template <class Start>
    boost::system::error_code run(Start&& start, std::chrono::milliseconds timeout);

    std::uint16_t port_;
    std::chrono::milliseconds timeout_;
    boost::asio::io_context ioc_;
    boost::beast::tcp_stream stream_;
    boost::beast::flat_buffer buffer_;
};

// One request on a fresh connection.
http_response http_request(std::uint16_t port, boost::beast::http::verb method,
                           const std::string& target, const header_list& headers = {},
                           const std::string& body = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));
inline http_response http_get(std::uint16_t port, const std::string& target,
                              const header_list& headers = {}) {
    return http_request(port, boost::beast::http::verb::get, target, headers);
}

// Sends raw bytes on a fresh connection and reads one response.
http_response raw_request(std::uint16_t port, std::string_view bytes,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Sends raw bytes on a fresh connection (the proxy may answer and close before it has read
// them all) and reads one response within 5 s; status 0 when none came, the reason then in
// *failure. *closed_after: whether the proxy then closed the connection within 3 s.
http_response raw_exchange(std::uint16_t port, std::string_view bytes, bool* closed_after,
                           std::optional<std::string>* failure);

}  // namespace rlp_test
