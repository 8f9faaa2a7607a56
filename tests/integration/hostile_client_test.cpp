// Hostile and unusual clients: slowloris, idle keep-alive, oversized headers and bodies,
// request smuggling attempts, HTTP/1.0 and pipelining. The proxy answers or cuts them off in
// bounded time, keeps serving everyone else, and lets nothing smuggled reach the upstream.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <functional>
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

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

class HostileClientTest : public proxy_fixture<beast_upstream> {
  protected:
    static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }

    void start(std::optional<std::string> config = std::nullopt, env_list env = {}) {
        env.emplace(env.begin(), "RATE_LIMIT", "100000");
        start_proxy({.base_path = "/base",
                     .env = std::move(env),
                     .config = std::move(config),
                     .register_token = true});
    }

    std::string host() const { return "Host: 127.0.0.1:" + std::to_string(port()) + "\r\n"; }
    std::string auth() const { return "Authorization: Bearer " + token + "\r\n"; }

    // Sends bytes on a fresh connection and reads one response; status 0 when none came
    // within 5 s. *closed_after: whether the proxy then closed the connection within 3 s.
    http_response send(const std::string& bytes, bool* closed_after = nullptr,
                       std::string* failure = nullptr) {
        std::optional<std::string> why;
        auto r = raw_exchange(port(), bytes, closed_after, &why);
        if (failure && why)
            *failure = *why;
        return r;
    }

    void expect_json_error(const http_response& r, unsigned status) {
        EXPECT_EQ(r.status, status) << r.headers_text() << r.body;
        if (r.status != status)
            return;
        EXPECT_TRUE(r.header("Content-Type").rfind("application/json", 0) == 0) << r.headers_text();
        try {
            EXPECT_TRUE(r.json().contains("error")) << r.body;
        } catch (const std::exception&) {
            ADD_FAILURE() << "body is not JSON: " << r.body;
        }
    }

    void expect_still_serving() {
        EXPECT_TRUE(proxy->process().running()) << proxy->log();
        auto r = http_get(port(), "/api/after/echo", bearer(token));
        EXPECT_EQ(r.status, 200u) << r.body;
    }
};

// 200 connections send their header one byte per second. With header_timeout_ms=1000 each
// is answered 408 or closed about a second after it opened, while a normal client keeps
// getting quick 200s throughout.
TEST_F(HostileClientTest, CutsOffSlowlorisConnectionsWhileServingOthers) {
    start(R"({"server":{"header_timeout_ms":1000}})");
    const std::string header = "GET /api/slow-loris/echo HTTP/1.1\r\n" + host() + auth() +
                               "X-Padding: " + std::string(64, 'p') + "\r\n\r\n";

    std::atomic<bool> stop{false};
    std::mutex m;
    std::vector<std::pair<unsigned, long long>> normal;  // status, ms
    std::thread client([&] {
        while (!stop) {
            auto start = steady::now();
            unsigned status = 0;
            try {
                status =
                    http_request(port(), http::verb::get, "/api/normal/echo", bearer(token), {}, 3s)
                        .status;
            } catch (const std::exception&) {
            }
            {
                std::lock_guard lock(m);
                normal.emplace_back(status, elapsed_ms(start));
            }
            std::this_thread::sleep_for(100ms);
        }
    });

    connection_swarm swarm(port());
    const std::size_t opened = swarm.open(200);
    auto attack_start = steady::now();
    std::size_t pos = 0;
    while (steady::now() - attack_start < 6s && swarm.open_count() > 0 && pos < header.size()) {
        for (std::size_t i = 0; i < swarm.size(); ++i)
            if (!swarm[i].closed)
                swarm.send(i, header.substr(pos, 1), 200ms);
        ++pos;
        swarm.pump(1000ms);
    }
    stop = true;
    client.join();

    std::size_t cut_in_time = 0, answered_408 = 0, served = 0;
    long long latest_cut = 0;
    for (std::size_t i = 0; i < swarm.size(); ++i) {
        const auto& c = swarm[i];
        answered_408 += contains(c.received, " 408 ") ? 1 : 0;
        served += contains(c.received, " 200 ") ? 1 : 0;
        if (c.closed) {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(c.closed_at - c.opened)
                          .count();
            latest_cut = std::max<long long>(latest_cut, ms);
            if (ms <= 3000)
                ++cut_in_time;
        } else if (contains(c.received, " 408 ")) {
            ++cut_in_time;
        }
    }
    std::cout << "[ info     ] " << opened << " slow connections; " << swarm.closed_count()
              << " closed by the proxy (" << answered_408 << " with 408), latest after "
              << latest_cut << " ms; " << swarm.open_count() << " still open after "
              << elapsed_ms(attack_start) << " ms (" << pos << " header bytes sent each)\n";
    EXPECT_EQ(opened, 200u);
    EXPECT_EQ(cut_in_time, opened)
        << "with header_timeout_ms=1000 every slow header must be answered 408 or closed "
           "within about a second; "
        << swarm.open_count() << " were still open after " << elapsed_ms(attack_start) << " ms";
    EXPECT_EQ(served, 0u);

    std::size_t ok = 0;
    long long slowest = 0;
    for (auto& [status, ms] : normal) {
        ok += status == 200;
        slowest = std::max(slowest, ms);
    }
    EXPECT_GE(normal.size(), 5u);
    EXPECT_EQ(ok, normal.size()) << "a normal client failed during the attack";
    EXPECT_LT(slowest, 1000) << "a normal client waited during the attack";
    EXPECT_EQ(upstream.request_count(), ok) << "only the normal client's requests went up";
    expect_still_serving();
}

// idle_timeout_ms=1000: a keep-alive connection with nothing more to say is closed after
// about a second, while one that keeps sending requests stays open.
TEST_F(HostileClientTest, ClosesIdleKeepAliveConnectionAfterIdleTimeout) {
    start(R"({"server":{"idle_timeout_ms":1000}})");
    {
        http_connection busy(port(), 5s);
        for (int i = 0; i < 5; ++i) {
            auto r = busy.request(http::verb::get, "/api/busy/echo", bearer(token));
            ASSERT_EQ(r.status, 200u) << "request " << i << " on a connection in use: " << r.body;
            ASSERT_TRUE(r.keep_alive);
            std::this_thread::sleep_for(600ms);
        }
    }
    http_connection c(port(), 5s);
    auto r = c.request(http::verb::get, "/api/idle/echo", bearer(token));
    ASSERT_EQ(r.status, 200u);
    ASSERT_TRUE(r.keep_alive);
    auto start = steady::now();
    EXPECT_TRUE(c.wait_for_close(4s)) << "the idle connection was still open after 4 s";
    auto ms = elapsed_ms(start);
    EXPECT_GE(ms, 700) << "closed before the idle timeout";
    EXPECT_LE(ms, 2500) << "idle_timeout_ms=1000";
}

// server.max_header_bytes=4096: a 2 KB header passes, an 8 KB one (one big field, or many
// small ones) gets 431 and never reaches the upstream.
TEST_F(HostileClientTest, AnswersOversizedHeaderWith431) {
    start(R"({"server":{"max_header_bytes":4096}})");
    auto fine = send("GET /api/fine/echo HTTP/1.1\r\n" + host() + auth() +
                     "X-Big: " + std::string(2048, 'a') + "\r\n\r\n");
    EXPECT_EQ(fine.status, 200u) << fine.body;
    EXPECT_EQ(upstream.request_count(), 1u);

    bool closed = false;
    auto big = send("GET /api/big/echo HTTP/1.1\r\n" + host() + auth() +
                        "X-Big: " + std::string(8192, 'a') + "\r\n\r\n",
                    &closed);
    expect_json_error(big, 431);
    EXPECT_TRUE(closed);

    std::string many;
    for (int i = 0; i < 128; ++i)
        many += "X-Many-" + std::to_string(i) + ": " + std::string(56, 'b') + "\r\n";
    auto lots = send("GET /api/many/echo HTTP/1.1\r\n" + host() + auth() + many + "\r\n");
    expect_json_error(lots, 431);

    EXPECT_EQ(upstream.request_count(), 1u) << "an oversized header reached the upstream";
    expect_still_serving();
}

// The default limit is 16384 bytes: 12 KB passes, 20 KB is 431 (not 400).
TEST_F(HostileClientTest, AnswersHeaderOverTheDefaultLimitWith431) {
    start();
    auto fine = send("GET /api/fine/echo HTTP/1.1\r\n" + host() + auth() +
                     "X-Big: " + std::string(12 * 1024, 'a') + "\r\n\r\n");
    EXPECT_EQ(fine.status, 200u) << fine.body;
    auto big = send("GET /api/big/echo HTTP/1.1\r\n" + host() + auth() +
                    "X-Big: " + std::string(20 * 1024, 'a') + "\r\n\r\n");
    expect_json_error(big, 431);
    EXPECT_EQ(upstream.request_count(), 1u);
}

// server.max_body_bytes=1024: a body of exactly 1024 bytes passes; a declared Content-Length
// over it is refused before anything goes upstream; a chunked body that grows past it is cut
// off, and the upstream never receives it whole.
TEST_F(HostileClientTest, AnswersOversizedBodyWith413) {
    start(R"({"server":{"max_body_bytes":1024}})");
    auto at_limit = http_request(port(), http::verb::post, "/api/limit/echo", bearer(token),
                                 std::string(1024, 'x'));
    EXPECT_EQ(at_limit.status, 200u) << at_limit.body;
    ASSERT_EQ(upstream.request_count(), 1u);

    bool closed = false;
    auto declared = send("POST /api/declared/echo HTTP/1.1\r\n" + host() + auth() +
                             "Content-Type: application/octet-stream\r\nContent-Length: 4096\r\n"
                             "\r\n" +
                             std::string(4096, 'y'),
                         &closed);
    expect_json_error(declared, 413);
    EXPECT_TRUE(closed);
    EXPECT_EQ(upstream.request_count(), 1u) << "a body declared too big was forwarded";

    std::string chunks;
    for (int i = 0; i < 4; ++i)
        chunks += "320\r\n" + std::string(800, 'z') + "\r\n";  // 4 x 800 bytes
    chunks += "0\r\n\r\n";
    auto chunked = send("POST /api/chunked/echo HTTP/1.1\r\n" + host() + auth() +
                            "Transfer-Encoding: chunked\r\n\r\n" + chunks,
                        &closed);
    expect_json_error(chunked, 413);
    EXPECT_TRUE(closed);
    upstream.wait_for_requests(upstream.request_count(), 2s);
    for (const auto& rec : upstream.requests()) {
        if (contains(rec.target, "/chunked/")) {
            EXPECT_FALSE(rec.complete) << "the upstream received the over-limit body whole";
            EXPECT_LE(rec.body_bytes, 1024u);
        }
    }
    expect_still_serving();
}

// ---- request smuggling -----------------------------------------------------------------

struct smuggling_case {
    std::string name;
    // The hostile request, given the Host and Authorization lines and a complete follow-up
    // request that must never reach the upstream.
    std::function<std::string(const std::string& host, const std::string& auth,
                              const std::string& smuggled)>
        build;
    // Rejected on the header alone: then nothing at all may reach the upstream. Otherwise the
    // header may be relayed before the body turns out bad, but never a complete request.
    bool header_level = true;
};

std::ostream& operator<<(std::ostream& os, const smuggling_case& c) {
    return os << c.name;
}

const std::string front = "POST /api/front/echo HTTP/1.1\r\n";

std::vector<smuggling_case> smuggling_cases() {
    return {
        {"ContentLengthThenTransferEncoding",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth +
                    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + "0\r\n\r\n" +
                    smuggled;
         }},
        {"TransferEncodingThenContentLength",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth +
                    "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + "0\r\n\r\n" +
                    smuggled;
         }},
        {"TwoDifferingContentLengths",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth +
                    "Content-Length: 0\r\nContent-Length: " + std::to_string(smuggled.size()) +
                    "\r\n\r\n" + smuggled;
         }},
        {"ChunkedThenIdentity",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth + "Transfer-Encoding: chunked, identity\r\n\r\n" + smuggled;
         }},
        {"XChunked",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth + "Transfer-Encoding: xchunked\r\n\r\n" + smuggled;
         }},
        {"TransferEncodingWithObsFold",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth + "Transfer-Encoding:\r\n chunked\r\n\r\n" + "0\r\n\r\n" +
                    smuggled;
         }},
        {"ContentLengthWithPlusSign",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth + "Content-Length: +" + std::to_string(smuggled.size()) +
                    "\r\n\r\n" + smuggled;
         }},
        {"ContentLengthWithSpaceSeparatedValues",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth + "Content-Length: 0 " + std::to_string(smuggled.size()) +
                    "\r\n\r\n" + smuggled;
         }},
        {"ChunkSizeOverflow",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth + "Transfer-Encoding: chunked\r\n\r\n" +
                    "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n" + smuggled;
         },
         false},
        {"ChunkLinesEndingInBareLf",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth + "Transfer-Encoding: chunked\r\n\r\n" + "5\nhello\n0\n\n" +
                    smuggled;
         },
         false},
        {"NulInHeaderValue",
         [](auto& host, auto& auth, auto& smuggled) {
             return front + host + auth + std::string("X-Note: a\0b\r\n", 13) +
                    "Content-Length: 0\r\n\r\n" + smuggled;
         }},
    };
}

class SmugglingTest : public HostileClientTest,
                      public ::testing::WithParamInterface<smuggling_case> {};

TEST_P(SmugglingTest, RejectsWith400AndClosesAndNothingReachesTheUpstream) {
    start();
    const std::string smuggled = "GET /api/smuggled/echo HTTP/1.1\r\n" + host() + auth() + "\r\n";
    const std::string bytes = GetParam().build(host(), auth(), smuggled);
    bool closed = false;
    std::string failure;
    auto start_time = steady::now();
    auto r = send(bytes, &closed, &failure);
    auto ms = elapsed_ms(start_time);
    EXPECT_EQ(r.status, 400u) << (r.status == 0 ? "no response within 5 s: " + failure
                                                : r.headers_text() + r.body);
    EXPECT_TRUE(r.status >= 400 && r.status < 500) << "got " << r.status;
    EXPECT_TRUE(closed) << "a request that could be smuggled must close the connection";
    EXPECT_LT(ms, 5000);

    std::this_thread::sleep_for(200ms);  // anything smuggled would be on its way by now
    auto recs = upstream.requests();
    std::string seen;
    for (const auto& rec : recs)
        seen += rec.method + " " + rec.target + (rec.complete ? " (complete, " : " (incomplete, ") +
                std::to_string(rec.body_bytes) + " body bytes)\n";
    for (const auto& rec : recs) {
        EXPECT_FALSE(contains(rec.target, "smuggled")) << "smuggled request reached the upstream:\n"
                                                       << seen;
        EXPECT_FALSE(rec.complete) << "the hostile request reached the upstream whole:\n" << seen;
    }
    if (GetParam().header_level) {
        EXPECT_EQ(recs.size(), 0u) << "rejected on its header, nothing should go up:\n" << seen;
    }
    auto before = upstream.request_count();
    expect_still_serving();
    EXPECT_EQ(upstream.request_count(), before + 1);
}

INSTANTIATE_TEST_SUITE_P(Cases, SmugglingTest, ::testing::ValuesIn(smuggling_cases()),
                         [](const auto& info) { return info.param.name; });

// ---- HTTP/1.0 and pipelining -----------------------------------------------------------

TEST_F(HostileClientTest, AnswersHttp10WithoutKeepAliveAndCloses) {
    start();
    http_connection c(port(), 5s);
    c.send_raw("GET /api/ten/echo HTTP/1.0\r\n" + auth() + "\r\n");
    std::string raw;
    EXPECT_TRUE(c.wait_for_close(5s, &raw))
        << "HTTP/1.0 without keep-alive: close after the answer";
    EXPECT_TRUE(raw.rfind("HTTP/1.0 200", 0) == 0 || raw.rfind("HTTP/1.1 200", 0) == 0) << raw;
    EXPECT_FALSE(contains(lower(raw), "transfer-encoding: chunked"))
        << "an HTTP/1.0 client cannot read chunked framing:\n"
        << raw;
    auto body = raw.substr(raw.find("\r\n\r\n") + 4);
    EXPECT_TRUE(contains(body, "\"target\":\"/base/ten/echo\"")) << body;
    EXPECT_EQ(upstream.request_count(), 1u);
}

TEST_F(HostileClientTest, KeepsHttp10KeepAliveConnectionOpenForTheNextRequest) {
    start();
    http_connection c(port(), 5s);
    for (int i = 0; i < 3; ++i) {
        SCOPED_TRACE("request " + std::to_string(i));
        c.send_raw("GET /api/ten-ka/echo HTTP/1.0\r\nConnection: keep-alive\r\n" + auth() + "\r\n");
        http_response r;
        ASSERT_NO_THROW(r = c.read_response());
        EXPECT_EQ(r.status, 200u) << r.body;
        EXPECT_TRUE(r.keep_alive) << "Connection: keep-alive was asked for:\n" << r.headers_text();
        EXPECT_TRUE(r.has_header("Content-Length")) << r.headers_text();
        EXPECT_FALSE(r.has_header("Transfer-Encoding")) << r.headers_text();
    }
    EXPECT_EQ(upstream.request_count(), 3u);
}

TEST_F(HostileClientTest, EndsHttp10StreamedResponseByClosing) {
    // The upstream streams with chunked encoding; an HTTP/1.0 client gets the body raw,
    // delimited by the end of the connection, even though it asked for keep-alive.
    start();
    http_connection c(port(), 5s);
    c.send_raw("GET /api/ten-drip/drip?ms=100 HTTP/1.0\r\nConnection: keep-alive\r\n" + auth() +
               "\r\n");
    std::string raw;
    EXPECT_TRUE(c.wait_for_close(5s, &raw)) << raw;
    auto split = raw.find("\r\n\r\n");
    ASSERT_NE(split, std::string::npos) << raw;
    auto head = lower(raw.substr(0, split));
    EXPECT_TRUE(contains(head, " 200 ")) << head;
    EXPECT_FALSE(contains(head, "transfer-encoding")) << head;
    EXPECT_FALSE(contains(head, "connection: keep-alive")) << head;
    EXPECT_EQ(raw.substr(split + 4), "data: 1\n\ndata: 2\n\ndata: done\n\n");
}

TEST_F(HostileClientTest, AnswersPipelinedRequestsInOrderAcrossLocalAndProxiedOnes) {
    start();
    http_connection c(port(), 5s);
    c.send_raw("GET /api/p1/slow?ms=300 HTTP/1.1\r\n" + host() + auth() + "\r\n" +
               "GET /health HTTP/1.1\r\n" + host() + "\r\n" +  //
               "GET /api/p3/echo HTTP/1.1\r\n" + host() + auth() + "\r\n" +
               "GET /no-such-endpoint HTTP/1.1\r\n" + host() + "\r\n" +
               "POST /api/p5/echo HTTP/1.1\r\n" + host() + auth() +
               "Content-Length: 5\r\n\r\nhello");
    auto r1 = c.read_response();
    EXPECT_EQ(r1.status, 200u);
    EXPECT_TRUE(contains(r1.body, "/base/p1/slow")) << r1.body;
    auto r2 = c.read_response();
    EXPECT_EQ(r2.status, 200u);
    EXPECT_EQ(r2.body, R"({"status":"ok"})");
    auto r3 = c.read_response();
    EXPECT_EQ(r3.status, 200u);
    EXPECT_TRUE(contains(r3.body, "/base/p3/echo")) << r3.body;
    auto r4 = c.read_response();
    EXPECT_EQ(r4.status, 404u);
    auto r5 = c.read_response();
    EXPECT_EQ(r5.status, 200u);
    EXPECT_TRUE(contains(r5.body, "/base/p5/echo")) << r5.body;
    EXPECT_TRUE(contains(r5.body, "\"body_bytes\":5")) << r5.body;
    EXPECT_EQ(upstream.request_count(), 3u);
}

}  // namespace

// ---- framing the client cannot take apart -------------------------------------------------

// "Connection: content-length" names a framing header as hop-by-hop. Dropping it would send
// the body upstream without a length, where it would be read as a second request that was
// never authenticated nor counted. The body must arrive as a body.
TEST_F(HostileClientTest, ConnectionNamingContentLengthCannotSmuggleABody) {
    start();
    const std::string smuggled = "GET /base/smuggled/echo HTTP/1.1\r\nHost: x\r\n\r\n";
    http_connection c(port(), 5s);
    c.send_raw("POST /api/carrier/echo HTTP/1.1\r\n" + host() + auth() +
               "Connection: keep-alive, content-length\r\nContent-Length: " +
               std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled);
    auto r = c.read_response();
    EXPECT_EQ(r.status, 200u) << r.headers_text() << r.body;
    ASSERT_TRUE(upstream.wait_for_requests(1, 2s));
    std::this_thread::sleep_for(200ms);  // a smuggled second request would land by now
    auto requests = upstream.requests();
    ASSERT_EQ(requests.size(), 1u) << "the body became a request of its own upstream";
    EXPECT_EQ(requests[0].body_bytes, smuggled.size());
    EXPECT_EQ(requests[0].header("Content-Length"), std::to_string(smuggled.size()));
}

// TRACE echoes the request back, injected upstream key included: never relayed.
TEST_F(HostileClientTest, RefusesTraceSoTheUpstreamKeyIsNeverEchoed) {
    start();
    auto r = send("TRACE /api/anything/echo HTTP/1.1\r\n" + host() + auth() + "\r\n");
    EXPECT_EQ(r.status, 405u) << r.headers_text() << r.body;
    EXPECT_EQ(upstream.request_count(), 0u);
}
