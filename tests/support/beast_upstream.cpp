#include "beast_upstream.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <nlohmann/json.hpp>

#include <stdexcept>

#include "payload.hpp"

namespace rlp_test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string recorded_request::header(std::string_view name) const {
    for (auto& [k, v] : headers)
        if (beast::iequals(k, name))
            return v;
    return {};
}

bool recorded_request::has_header(std::string_view name) const {
    for (auto& [k, v] : headers)
        if (beast::iequals(k, name))
            return true;
    return false;
}

std::string recorded_request::raw_headers() const {
    std::string out;
    for (auto& [k, v] : headers)
        out += k + ": " + v + "\n";
    return out;
}

beast_upstream::beast_upstream() {
    server_.start([this](int fd) { serve(fd); });
}

beast_upstream::~beast_upstream() {
    stop();
}

std::string beast_upstream::url(std::string_view base_path) const {
    return server_.url(base_path);
}

std::vector<recorded_request> beast_upstream::requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}

bool beast_upstream::wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return finished_ >= n; });
}

bool beast_upstream::wait_for_holds_closed_by_peer(std::size_t n,
                                                   std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return holds_closed_.load() >= n; });
}

bool beast_upstream::wait_for_arrivals(std::size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

void beast_upstream::stop() {
    server_.stop();
}

namespace {

std::string query_param(std::string_view target, std::string_view name) {
    auto q = target.find('?');
    if (q == std::string_view::npos)
        return {};
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        auto amp = rest.find('&');
        std::string_view pair = rest.substr(0, amp);
        auto eq = pair.find('=');
        if (pair.substr(0, eq) == name)
            return eq == std::string_view::npos ? std::string{} : std::string(pair.substr(eq + 1));
        if (amp == std::string_view::npos)
            break;
        rest = rest.substr(amp + 1);
    }
    return {};
}

std::string last_segment(std::string_view target) {
    auto path = target.substr(0, target.find('?'));
    auto slash = path.rfind('/');
    return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::uint64_t to_u64(const std::string& s, std::uint64_t fallback) {
    if (s.empty())
        return fallback;
    try {
        return std::stoull(s);
    } catch (...) {
        return fallback;
    }
}

std::string json_response(unsigned status, const std::string& reason, const std::string& body,
                          const std::string& extra_headers = {}) {
    return "HTTP/1.1 " + std::to_string(status) + " " + reason +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n" + extra_headers + "\r\n" + body;
}

std::string chunk(std::string_view data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return std::string(size) + std::string(data) + "\r\n";
}

}  // namespace

void beast_upstream::serve(int fd) {
    net::io_context ioc;
    tcp::socket sock(ioc);
    sock.assign(tcp::v4(), fd);
    beast::flat_buffer buffer;
    std::vector<char> body_buf(64 * 1024);
    boost::system::error_code ec;

    auto write_all = [&](std::string_view data) {
        net::write(sock, net::buffer(data.data(), data.size()), ec);
        return !ec;
    };

    std::size_t on_this_connection = 0;
    while (!server_.stopping()) {
        http::request_parser<http::buffer_body> parser;
        parser.header_limit(64 * 1024);
        parser.body_limit(boost::none);
        http::read_header(sock, buffer, parser, ec);
        if (ec)
            break;

        std::size_t index;
        {
            recorded_request rec;
            auto& msg = parser.get();
            rec.method = std::string(msg.method_string());
            rec.target = std::string(msg.target());
            rec.version =
                std::to_string(msg.version() / 10) + "." + std::to_string(msg.version() % 10);
            for (const auto& f : msg.base())
                rec.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
            std::lock_guard lock(mutex_);
            index = requests_.size();
            requests_.push_back(std::move(rec));
            ++request_count_;
            ++on_this_connection;
        }
        cv_.notify_all();

        // Like real servers: ask for the body when the client waits for permission.
        if (beast::iequals(parser.get()[http::field::expect], "100-continue") &&
            !write_all("HTTP/1.1 100 Continue\r\n\r\n"))
            break;

        sha256_stream sha;
        std::uint64_t body_bytes = 0;
        std::string prefix;
        bool body_ok = true;
        while (!parser.is_done()) {
            parser.get().body().data = body_buf.data();
            parser.get().body().size = body_buf.size();
            http::read(sock, buffer, parser, ec);
            if (ec == http::error::need_buffer)
                ec = {};
            if (ec) {
                body_ok = false;
                break;
            }
            std::size_t n = body_buf.size() - parser.get().body().size;
            std::string_view piece(body_buf.data(), n);
            sha.update(piece);
            body_bytes += n;
            if (prefix.size() < 64 * 1024)
                prefix.append(piece.substr(0, 64 * 1024 - prefix.size()));
        }
        std::string digest = sha.hex_digest();
        std::string target(parser.get().target());
        bool keep_alive = parser.get().keep_alive();
        {
            std::lock_guard lock(mutex_);
            auto& rec = requests_[index];
            rec.body_bytes = body_bytes;
            rec.body_sha256 = digest;
            rec.body_prefix = prefix;
            rec.complete = body_ok;
        }
        auto finish = [&] {
            {
                std::lock_guard lock(mutex_);
                ++finished_;
            }
            cv_.notify_all();
        };
        if (!body_ok) {
            finish();
            break;
        }

        const std::string what = last_segment(target);
        bool ok = true;
        if (what == "drop" || (drop_reused_ && on_this_connection > 1)) {
            ++dropped_requests_;
            finish();
            break;
        }
        if (what == "never") {
            server_.sleep_or_stop(std::chrono::minutes(5));
            finish();
            break;
        } else if (what == "drip") {
            auto ms = to_u64(query_param(target, "ms"), 2000);
            ok = write_all(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
                "no-cache\r\nTransfer-Encoding: chunked\r\n\r\n" +
                chunk("data: 1\n\n"));
            if (ok && !server_.sleep_or_stop(std::chrono::milliseconds(ms)))
                ok = write_all(chunk("data: 2\n\n") + chunk("data: done\n\n") + "0\r\n\r\n");
        } else if (what == "download") {
            auto n = to_u64(query_param(target, "bytes"), 1024);
            bool chunked = query_param(target, "chunked") == "1";
            std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n";
            head += "X-Body-Sha256: " + pattern_sha256(n) + "\r\n";
            head += chunked ? std::string("Transfer-Encoding: chunked\r\n")
                            : "Content-Length: " + std::to_string(n) + "\r\n";
            head += "\r\n";
            ok = write_all(head);
            std::vector<char> out(256 * 1024);
            std::uint64_t sent = 0;
            while (ok && sent < n && !server_.stopping()) {
                std::size_t k =
                    static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), n - sent));
                fill_pattern(sent, out.data(), k);
                std::string_view piece(out.data(), k);
                ok = chunked ? write_all(chunk(piece)) : write_all(piece);
                sent += k;
            }
            if (ok && chunked)
                ok = write_all("0\r\n\r\n");
            if (!ok)
                ++aborted_downloads_;
        } else if (what == "eof") {
            // No Content-Length, no chunking: the body ends when the connection does.
            auto n = to_u64(query_param(target, "bytes"), 1024);
            std::string body(static_cast<std::size_t>(n), '\0');
            fill_pattern(0, body.data(), body.size());
            write_all(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                "Connection: close\r\n\r\n" +
                body);
            finish();
            break;
        } else if (what == "hop") {
            std::string body = R"({"hop":true})";
            ok = write_all(
                "HTTP/1.1 200 OK\r\n"
                "Content-Type: application/json\r\n"
                "Connection: X-Up-Hop\r\n"
                "X-Up-Hop: 1\r\n"
                "Keep-Alive: timeout=5, max=100\r\n"
                "Proxy-Authenticate: Basic realm=\"upstream\"\r\n"
                "Proxy-Connection: keep-alive\r\n"
                "x-ratelimit-limit-requests: 100\r\n"
                "x-ratelimit-remaining-requests: 99\r\n"
                "X-RateLimit-Limit: 7\r\n"
                "Retry-After: 30\r\n"
                "X-End-To-End: yes\r\n"
                "X-Request-Id: req_hop_upstream_1\r\n"
                "Content-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body);
        } else if (what == "reset") {
            std::string head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "
                "1000000\r\n\r\n";
            std::string part(1000, 'x');
            write_all(head + part);
            server_.sleep_or_stop(std::chrono::milliseconds(100));
            linger lg{1, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            finish();
            break;
        } else if (what == "stall") {
            auto n = to_u64(query_param(target, "bytes"), 1024);
            auto total = to_u64(query_param(target, "total"), 2 * n);
            auto ms = to_u64(query_param(target, "ms"), 5 * 60 * 1000);
            std::string body(static_cast<std::size_t>(total), '\0');
            fill_pattern(0, body.data(), body.size());
            ok = write_all(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                std::to_string(total) + "\r\n\r\n" + body.substr(0, static_cast<std::size_t>(n)));
            if (ok && !server_.sleep_or_stop(std::chrono::milliseconds(ms)))
                ok = write_all(std::string_view(body).substr(static_cast<std::size_t>(n)));
            else
                ok = false;
        } else if (what == "hold") {
            auto ms = to_u64(query_param(target, "ms"), 10000);
            auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
            bool peer_closed = false;
            while (!server_.stopping() && std::chrono::steady_clock::now() < deadline) {
                // Not POLLIN: bytes the peer might send must not make this spin.
                pollfd p{fd, POLLRDHUP, 0};
                if (::poll(&p, 1, 20) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                    peer_closed = true;
                    break;
                }
            }
            if (peer_closed || server_.stopping()) {
                if (peer_closed)
                    ++holds_closed_;
                finish();
                break;
            }
            nlohmann::json j;
            j["held_ms"] = ms;
            ok = write_all(json_response(200, "OK", j.dump()));
        } else if (what == "status") {
            auto code = static_cast<unsigned>(to_u64(query_param(target, "code"), 200));
            std::string body = R"({"status":)" + std::to_string(code) + "}";
            ok = write_all(json_response(code, "Status", body));
        } else {
            if (what == "slow") {
                auto ms = to_u64(query_param(target, "ms"), 1000);
                if (server_.sleep_or_stop(std::chrono::milliseconds(ms))) {
                    finish();
                    break;
                }
            }
            nlohmann::json j;
            {
                std::lock_guard lock(mutex_);
                auto& rec = requests_[index];
                j["method"] = rec.method;
                j["target"] = rec.target;
                j["headers"] = nlohmann::json::array();
                for (auto& [k, v] : rec.headers)
                    j["headers"].push_back({k, v});
                j["body_bytes"] = rec.body_bytes;
                j["body_sha256"] = rec.body_sha256;
            }
            ok = write_all(json_response(200, "OK", j.dump()));
            if (what == "closeafter") {
                finish();
                break;
            }
        }
        finish();
        if (!ok || !keep_alive)
            break;
    }

    server_.forget(fd);
    sock.close(ec);
}

}  // namespace rlp_test
