#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "loopback_server.hpp"

namespace rlp_test {

struct recorded_request {
    std::string method;
    std::string target;
    std::string version;                                       // "1.1", "1.0"
    std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
    std::uint64_t body_bytes = 0;
    std::string body_sha256;
    std::string body_prefix;  // the first 64 KiB of the body
    bool complete = false;    // the whole body arrived

    std::string header(std::string_view name) const;  // first match, case-insensitive
    bool has_header(std::string_view name) const;
    std::string raw_headers() const;  // "Name: value\n" lines
};

// An in-process HTTP/1.1 upstream on 127.0.0.1 with exact control over its behaviour: one
// thread per connection, synchronous Beast. Behaviour is chosen by the last segment of the
// request path (the proxy adds its own base path in front):
//   .../echo (or anything else): reads the body; 200 JSON {"method","target","headers",
//        "body_bytes","body_sha256"}
//   .../slow?ms=N          reads the body, waits N ms (default 1000), then answers like echo
//   .../drip?ms=N          200 chunked text/event-stream: "data: 1\n\n", waits N ms (default
//                          2000), then "data: 2\n\n" and "data: done\n\n"
//   .../download?bytes=N[&chunked=1]  N pattern bytes (see payload.hpp); X-Body-Sha256 header
//   .../eof?bytes=N        N pattern bytes without Content-Length or chunking, then close
//   .../hop                response carrying hop-by-hop headers (Connection: X-Up-Hop,
//                          X-Up-Hop, Keep-Alive, Proxy-Authenticate, Proxy-Connection) and
//                          end-to-end ones (x-ratelimit-limit-requests: 100, X-End-To-End: yes,
//                          and the proxy's own names X-RateLimit-Limit: 7, Retry-After: 30,
//                          X-Request-Id: req_hop_upstream_1)
//   .../never              reads the request, never answers (until stop)
//   .../reset              announces 1 MB, sends 1000 bytes, then resets the connection
//   .../status?code=N      answers with status N and a small JSON body
//   .../stall?bytes=N&total=T&ms=M  200 with Content-Length T (default 2N), sends N pattern
//                          bytes, goes silent for M ms (default: until stop), then the rest
//   .../closeafter         answers like echo (no "Connection: close"), then closes the
//                          connection: a keep-alive connection the upstream dropped while idle
//   .../drop               reads the request and closes the connection without answering
//   .../hold?ms=N          reads the request, then waits up to N ms (default 10000) watching
//                          the connection: when the peer closes it first, that is counted
//                          (see holds_closed_by_peer); otherwise answers like echo
// A request with "Expect: 100-continue" gets "100 Continue" before its body is read.
// With drop_reused_connections(true), every request after the first on a connection is read
// and then dropped like .../drop: a stale pooled connection as its user experiences it.
class beast_upstream {
  public:
    beast_upstream();
    ~beast_upstream();
    beast_upstream(const beast_upstream&) = delete;
    beast_upstream& operator=(const beast_upstream&) = delete;

    std::uint16_t port() const { return server_.port(); }
    // "http://127.0.0.1:PORT" + base_path
    std::string url(std::string_view base_path = "") const;

    std::size_t request_count() const { return request_count_.load(); }
    std::size_t connection_count() const { return server_.connection_count(); }
    // .../download responses whose connection broke before the last byte was sent.
    std::size_t aborted_downloads() const { return aborted_downloads_.load(); }
    // Requests dropped without an answer (.../drop and drop_reused_connections).
    std::size_t dropped_requests() const { return dropped_requests_.load(); }
    // .../hold requests whose connection the peer closed before the answer was due.
    std::size_t holds_closed_by_peer() const { return holds_closed_.load(); }
    bool wait_for_holds_closed_by_peer(std::size_t n, std::chrono::milliseconds timeout) const;
    // Waits until at least n requests have arrived (header read; maybe still being handled).
    bool wait_for_arrivals(std::size_t n, std::chrono::milliseconds timeout) const;
    void drop_reused_connections(bool on) { drop_reused_ = on; }
    std::vector<recorded_request> requests() const;
    // Waits until at least n requests have been fully handled (response sent or aborted).
    bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const;

    void stop();

  private:
    void serve(int fd);

    std::atomic<std::size_t> request_count_{0};
    std::atomic<std::size_t> aborted_downloads_{0};
    std::atomic<std::size_t> dropped_requests_{0};
    std::atomic<std::size_t> holds_closed_{0};
    std::atomic<bool> drop_reused_{false};

    mutable std::mutex mutex_;
    mutable std::condition_variable cv_;
    std::vector<recorded_request> requests_;
    std::size_t finished_ = 0;
    // Last: its threads stop (in stop()) before anything they use goes.
    loopback_server server_;
};

}  // namespace rlp_test
