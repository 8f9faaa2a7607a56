// Connection limits and connection lifecycles, on both sides of the proxy:
// - clients: server.max_connections, ten thousand idle keep-alive connections (memory, still
//   serving), every descriptor given back after load;
// - upstream: connect timeout, a body that stalls, keep-alive connections the upstream closed
//   (GET retried once, POST not), and a client that leaves cancelling the upstream request.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <mutex>
#include <thread>

#include "proxy_fixture.hpp"
#include "socket_swarm.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;

namespace {

using steady = std::chrono::steady_clock;

class ConnectionLimitTest : public proxy_fixture<beast_upstream> {
  protected:
    static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }

    void start(std::optional<std::string> config = std::nullopt, env_list env = {}) {
        env.emplace(env.begin(), "RATE_LIMIT", "1000000");
        start_proxy({.base_path = "/base",
                     .env = std::move(env),
                     .config = std::move(config),
                     .register_token = true});
    }

    long fds() const { return open_descriptor_count(proxy->pid()); }

    // Waits until the proxy holds at most `limit` descriptors; returns the last count.
    long wait_for_fds_at_most(long limit, std::chrono::milliseconds timeout) const {
        auto deadline = steady::now() + timeout;
        long n = fds();
        while (n > limit && steady::now() < deadline) {
            std::this_thread::sleep_for(100ms);
            n = fds();
        }
        return n;
    }
};

// server.max_connections=50: 50 clients are served; connections beyond them are closed at
// once; the 50 keep being served, and a freed slot can be taken again.
TEST_F(ConnectionLimitTest, RefusesConnectionsBeyondMaxConnections) {
    start(R"({"server":{"max_connections":50}})");
    std::vector<std::unique_ptr<http_connection>> held;
    for (int i = 0; i < 50; ++i) {
        held.push_back(std::make_unique<http_connection>(port(), 3s));
        auto r = held.back()->request(http::verb::get, "/health");
        ASSERT_EQ(r.status, 200u) << "connection " << i << " of the first 50";
        ASSERT_TRUE(r.keep_alive);
    }

    connection_swarm extra(port());
    ASSERT_EQ(extra.open(10), 10u);  // the kernel completes the handshake either way
    auto start_time = steady::now();
    bool all_closed = extra.pump_until([&] { return extra.closed_count() == 10; }, 3s);
    auto ms = elapsed_ms(start_time);
    EXPECT_TRUE(all_closed) << extra.closed_count() << " of 10 connections over the limit were "
                            << "closed within 3 s";
    EXPECT_LT(ms, 1500);
    for (std::size_t i = 0; i < extra.size(); ++i)
        EXPECT_FALSE(contains(extra[i].received, " 200 ")) << extra[i].received;

    for (std::size_t i = 0; i < held.size(); ++i) {
        http_response r;
        try {
            r = held[i]->request(http::verb::get, "/api/held/echo", bearer(token));
        } catch (const std::exception& e) {
            ADD_FAILURE() << "held connection " << i << " broke: " << e.what();
            continue;
        }
        EXPECT_EQ(r.status, 200u) << "held connection " << i;
    }

    // Freeing slots lets new clients in again.
    held.resize(40);
    bool served_again = false;
    auto deadline = steady::now() + 3s;
    while (!served_again && steady::now() < deadline) {
        try {
            served_again =
                http_request(port(), http::verb::get, "/health", {}, {}, 1s).status == 200u;
        } catch (const std::exception&) {
            std::this_thread::sleep_for(100ms);
        }
    }
    EXPECT_TRUE(served_again) << "no new connection was served after 10 of the 50 closed";
    EXPECT_TRUE(proxy->process().running());
}

// Ten thousand keep-alive connections sit idle (each has had one answer); a normal client is
// still answered promptly, the proxy's memory stays modest, and once they close every
// descriptor is given back.
TEST_F(ConnectionLimitTest, HoldsTenThousandIdleConnectionsAndGivesEveryDescriptorBack) {
    constexpr std::size_t n = 10000;
    const std::size_t limit = raise_open_file_limit();
    if (limit < n + 500)
        GTEST_SKIP() << "RLIMIT_NOFILE hard limit is " << limit << "; holding " << n
                     << " connections needs at least " << n + 500
                     << " (raise it, e.g. ulimit -Hn 65536)";
    start();
    ASSERT_EQ(http_get(port(), "/api/warm/echo", bearer(token)).status, 200u);
    std::this_thread::sleep_for(200ms);
    const long before = fds();
    const long rss_before = proxy->vm_rss_kb();

    connection_swarm swarm(port());
    auto t0 = steady::now();
    const std::size_t opened = swarm.open(n, 3s);
    ASSERT_EQ(opened, n) << "could not open " << n << " connections to the proxy";
    const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    for (std::size_t i = 0; i < n; ++i)
        ASSERT_TRUE(swarm.send(i, request)) << "connection " << i;
    bool all_answered =
        swarm.pump_until([&] { return swarm.count_received(R"({"status":"ok"})") == n; }, 20s);
    std::cout << "[ info     ] " << n << " connections opened and answered in " << elapsed_ms(t0)
              << " ms\n";
    ASSERT_TRUE(all_answered) << swarm.count_received(R"({"status":"ok"})") << " of " << n
                              << " answered; " << swarm.closed_count() << " closed";
    EXPECT_EQ(swarm.closed_count(), 0u);
    EXPECT_GE(fds(), before + static_cast<long>(n)) << "the proxy does not hold them";

    for (int i = 0; i < 10; ++i) {
        auto start_time = steady::now();
        auto r = http_request(port(), http::verb::get, "/api/beside/echo", bearer(token), {}, 5s);
        EXPECT_EQ(r.status, 200u) << r.body;
        EXPECT_LT(elapsed_ms(start_time), 2000) << "a normal request beside the idle crowd";
    }
    swarm.pump(100ms);
    EXPECT_EQ(swarm.closed_count(), 0u) << "idle connections were dropped early";

    const long rss = proxy->vm_rss_kb();
    std::cout << "[ info     ] proxy RSS: " << rss_before / 1024 << " MiB before, " << rss / 1024
              << " MiB with " << n << " idle connections (peak " << proxy->vm_hwm_kb() / 1024
              << " MiB)\n";
    ASSERT_GT(rss, 0);
#ifdef RLP_SANITIZE
    // ASan's shadow memory and redzones roughly double the footprint.
    constexpr long rss_bound_mib = 400;
#else
    constexpr long rss_bound_mib = 200;
#endif
    EXPECT_LT(rss, rss_bound_mib * 1024) << "RSS with " << n << " idle connections";

    swarm.close_all();
    long after = wait_for_fds_at_most(before + 8, 10s);
    EXPECT_LE(after, before + 8) << "descriptors before: " << before << ", after closing: " << after
                                 << "; " << describe_descriptors(proxy->pid());
    EXPECT_EQ(http_get(port(), "/api/after/echo", bearer(token)).status, 200u);
    EXPECT_TRUE(proxy->process().running());
}

// 2000 requests of every kind (keep-alive, one per connection, clients that leave mid-request,
// local errors, upstream errors): afterwards the proxy holds as many descriptors as before.
TEST_F(ConnectionLimitTest, GivesEveryDescriptorBackAfterLoad) {
    start(R"({"upstream":{"response_timeout_ms":2000}})");
    auto run = [&](int per_thread) {
        std::vector<std::thread> threads;
        std::atomic<int> failures{0};
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&, t] {
                std::unique_ptr<http_connection> keep;
                for (int i = 0; i < per_thread; ++i) {
                    try {
                        switch (t) {
                            case 0: {  // one keep-alive connection
                                if (!keep)
                                    keep = std::make_unique<http_connection>(port(), 5s);
                                auto r =
                                    keep->request(http::verb::get, "/api/ka/echo", bearer(token));
                                failures += r.status != 200;
                                break;
                            }
                            case 1: {  // a connection per request
                                auto r = http_request(port(), http::verb::post, "/api/new/echo",
                                                      bearer(token), "some body", 5s);
                                failures += r.status != 200;
                                break;
                            }
                            case 2: {  // clients that leave before the answer
                                http_connection c(port(), 5s);
                                if (i % 2 == 0) {
                                    c.send_raw(
                                        "GET /api/leave/slow?ms=50 HTTP/1.1\r\nHost: x\r\n"
                                        "Authorization: Bearer " +
                                        token + "\r\n\r\n");
                                } else {
                                    c.send_raw(
                                        "POST /api/leave/echo HTTP/1.1\r\nHost: x\r\n"
                                        "Authorization: Bearer " +
                                        token + "\r\nContent-Length: 100000\r\n\r\npart");
                                }
                                std::this_thread::sleep_for(2ms);
                                break;  // closed here
                            }
                            default: {  // errors, local and upstream
                                // (/reset takes 100 ms upstream: only now and then)
                                static const char* targets[] = {"/no-such", "/api/x/drop",
                                                                "/api/x/status?code=500",
                                                                "/api/x/status?code=404"};
                                const char* target = i % 25 == 3 ? "/api/x/reset" : targets[i % 4];
                                auto r = http_request(port(), http::verb::get, target,
                                                      bearer(token), {}, 5s);
                                failures += r.status == 0;
                                break;
                            }
                        }
                    } catch (const std::exception&) {
                        // reset bodies end short; that is expected for /reset
                    }
                }
            });
        }
        for (auto& th : threads)
            th.join();
        return failures.load();
    };
    run(10);  // warm up: the upstream pool fills to its working size
    std::this_thread::sleep_for(500ms);
    const long before = fds();

    auto t0 = steady::now();
    int failures = run(500);
    std::cout << "[ info     ] 2000 requests in " << elapsed_ms(t0) << " ms\n";
    EXPECT_EQ(failures, 0);
    EXPECT_TRUE(proxy->process().running());

    long after = wait_for_fds_at_most(before + 8, 10s);
    EXPECT_LE(after, before + 8) << "descriptors before: " << before
                                 << ", after the load: " << after << "; "
                                 << describe_descriptors(proxy->pid());
}

// ---- the upstream side --------------------------------------------------------------------

class UpstreamConnectionTest : public ConnectionLimitTest {
  protected:
    void start_to(const std::string& target, std::optional<std::string> config, env_list env = {}) {
        env.emplace(env.begin(), "RATE_LIMIT", "1000000");
        start_proxy({.target_url = target,
                     .env = std::move(env),
                     .config = std::move(config),
                     .register_token = true});
    }

    std::size_t requests_to(std::string_view needle) const {
        std::size_t n = 0;
        for (const auto& rec : upstream.requests())
            n += contains(rec.target, needle) ? 1 : 0;
        return n;
    }
};

// Connecting hangs (the upstream's accept queue is full): after upstream.connect_timeout_ms
// the client gets 504, and the body names no address.
TEST_F(UpstreamConnectionTest, AnswersWith504WhenConnectingTimesOut) {
    full_backlog_listener blackhole;
    if (!blackhole.connect_hangs(300ms))
        GTEST_SKIP() << "a full accept queue does not make connects hang on this kernel";
    const std::string target = "http://127.0.0.1:" + std::to_string(blackhole.port()) + "/v1";
    start_to(target, R"({"upstream":{"connect_timeout_ms":500}})");
    auto start_time = steady::now();
    auto r = http_request(port(), http::verb::get, "/api/echo", bearer(token), {}, 10s);
    auto ms = elapsed_ms(start_time);
    EXPECT_EQ(r.status, 504u) << r.body;
    EXPECT_GE(ms, 400);
    EXPECT_LT(ms, 2500) << "connect_timeout_ms=500 should bound the wait";
    EXPECT_NO_THROW(r.json()) << r.body;
    EXPECT_FALSE(contains(r.body, "127.0.0.1")) << r.body;
    EXPECT_FALSE(contains(r.body, std::to_string(blackhole.port()))) << r.body;
    EXPECT_EQ(http_get(port(), "/health").status, 200u);
}

// The upstream sends half the body and goes silent: after upstream.idle_timeout_ms the
// client's response ends short (connection closed), instead of hanging.
TEST_F(UpstreamConnectionTest, CutsShortAResponseWhoseBodyStalls) {
    start_to(upstream.url("/base"), R"({"upstream":{"idle_timeout_ms":500}})");
    http_connection c(port(), 5s);
    c.send_raw(
        "GET /api/stall?bytes=1000&total=100000 HTTP/1.1\r\nHost: x\r\nAuthorization: "
        "Bearer " +
        token + "\r\n\r\n");
    auto start_time = steady::now();
    std::string raw;
    bool closed = c.wait_for_close(5s, &raw);
    auto ms = elapsed_ms(start_time);
    EXPECT_TRUE(closed) << "the response was still open after 5 s";
    EXPECT_LT(ms, 2500) << "idle_timeout_ms=500 should end the stalled body";
    EXPECT_TRUE(raw.rfind("HTTP/1.1 200", 0) == 0) << raw.substr(0, 200);
    auto split = raw.find("\r\n\r\n");
    ASSERT_NE(split, std::string::npos);
    auto body_bytes = raw.size() - split - 4;
    EXPECT_GE(body_bytes, 1000u) << "the part before the stall is relayed";
    EXPECT_LT(body_bytes, 100000u) << "the response must end short, not look complete";
    EXPECT_EQ(http_get(port(), "/api/after/echo", bearer(token)).status, 200u);
}

// The upstream closes each keep-alive connection right after answering (without saying
// "Connection: close"): the pooled connection is stale when the next request wants it, and
// every GET still succeeds. (A POST goes first: its connection is pooled in any case.)
TEST_F(UpstreamConnectionTest, ServesGetsWhenTheUpstreamClosesIdleConnections) {
    start_to(upstream.url("/base"), std::nullopt, {{"THREADS", "1"}});
    http_connection c(port(), 5s);
    auto first = c.request(http::verb::post, "/api/closeafter", bearer(token), "prime");
    ASSERT_EQ(first.status, 200u) << first.body;
    for (int i = 0; i < 6; ++i) {
        auto r = c.request(http::verb::get, "/api/closeafter", bearer(token));
        EXPECT_EQ(r.status, 200u) << "GET " << i << ": " << r.body;
        std::this_thread::sleep_for(i % 2 ? 0ms : 50ms);
    }
    EXPECT_EQ(requests_to("closeafter"), 7u);
}

// Upstream keep-alive connections are pooled: GETs on one keep-alive client connection, and
// GETs from clients that make one request each and hang up (the usual curl/SDK pattern), all
// share one upstream connection (one worker thread here).
TEST_F(UpstreamConnectionTest, ReusesUpstreamConnectionsForBodilessRequests) {
    start_to(upstream.url("/base"), std::nullopt, {{"THREADS", "1"}});
    {
        http_connection client(port(), 5s);
        for (int i = 0; i < 5; ++i)
            ASSERT_EQ(client.request(http::verb::get, "/api/same/echo", bearer(token)).status,
                      200u);
    }
    const auto on_one_client = upstream.connection_count();
    for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(http_get(port(), "/api/one-shot/echo", bearer(token)).status, 200u);
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(on_one_client, 1u) << "upstream connections for 5 GETs on one client connection";
    EXPECT_EQ(upstream.connection_count(), 1u)
        << "upstream connections for 10 GETs, the last 5 from clients that each closed after "
           "their answer";
}

// The POST that primes the pool in the next tests: its connection is pooled either way.
void prime_pool(http_connection& client, const std::string& token) {
    auto r = client.request(http::verb::post, "/api/first/echo", bearer(token), "prime");
    ASSERT_EQ(r.status, 200u) << r.body;
}

// A pooled connection fails under a GET (the upstream read it, then closed without an
// answer): the proxy retries once on a fresh connection and the client never notices.
TEST_F(UpstreamConnectionTest, RetriesAGetOnceWhenAReusedConnectionFails) {
    start_to(upstream.url("/base"), std::nullopt, {{"THREADS", "1"}});
    http_connection client(port(), 5s);
    prime_pool(client, token);
    upstream.drop_reused_connections(true);
    auto r = client.request(http::verb::get, "/api/second/echo", bearer(token));
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(upstream.dropped_requests(), 1u)
        << "the pooled connection was not reused: the upstream saw " << upstream.connection_count()
        << " connections for " << upstream.request_count() << " requests";
    EXPECT_EQ(requests_to("/second/"), 2u) << "one failed try, one retry";
}

// The same for a POST: not retried, since the upstream may have acted on it. The client gets
// 502 and the upstream saw the POST exactly once.
TEST_F(UpstreamConnectionTest, DoesNotRetryAPostWhenAReusedConnectionFails) {
    start_to(upstream.url("/base"), std::nullopt, {{"THREADS", "1"}});
    http_connection client(port(), 5s);
    prime_pool(client, token);
    upstream.drop_reused_connections(true);
    auto r = client.request(http::verb::post, "/api/order/echo", bearer(token), R"({"buy":1})");
    std::cout << "[ info     ] POST on a stale upstream connection got " << r.status << " "
              << r.body << "\n";
    EXPECT_EQ(upstream.dropped_requests(), 1u)
        << "the pooled connection was not reused: the upstream saw " << upstream.connection_count()
        << " connections for " << upstream.request_count() << " requests";
    EXPECT_EQ(requests_to("/order/"), 1u) << "a POST must never be sent twice";
    EXPECT_EQ(r.status, 502u) << r.body;
    EXPECT_NO_THROW(r.json()) << r.body;
}

// A client that goes away while the upstream is still working: the proxy closes the upstream
// connection within a second or two instead of waiting for the answer nobody will read.
TEST_F(UpstreamConnectionTest, CancelsTheUpstreamRequestWhenTheClientLeaves) {
    start_to(upstream.url("/base"), std::nullopt);
    {
        http_connection c(port(), 5s);
        c.send_raw("GET /api/hold?ms=15000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                   "\r\n\r\n");
        ASSERT_TRUE(upstream.wait_for_arrivals(1, 3s)) << "the request never reached the upstream";
        std::this_thread::sleep_for(100ms);
    }  // the client closes its connection here
    auto start_time = steady::now();
    bool cancelled = upstream.wait_for_holds_closed_by_peer(1, 4s);
    auto ms = elapsed_ms(start_time);
    EXPECT_TRUE(cancelled) << "the upstream connection was still open 4 s after the client left";
    EXPECT_LT(ms, 2500);
    EXPECT_EQ(http_get(port(), "/api/after/echo", bearer(token)).status, 200u);
}

}  // namespace
