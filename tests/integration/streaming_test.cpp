// Streaming both ways: large bodies pass without the proxy buffering them; events arrive as
// the upstream sends them.
#include <gtest/gtest.h>

#include <iostream>
#include <thread>

#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
namespace http = boost::beast::http;

namespace {

constexpr std::uint64_t kBig = 50ull * 1024 * 1024;
constexpr long kMaxGrowthKb = 32 * 1024;

class StreamingTest : public proxy_fixture<beast_upstream> {
  protected:
    long hwm_before_kb = 0;

    void SetUp() override {
        start_proxy({.base_path = "/s", .register_token = true});
        // Warm up: one small request each way so buffers, pools and TLS-free paths exist.
        auto r = http_request(proxy->port(), http::verb::post, "/api/echo", bearer(token),
                              std::string(200 * 1024, 'w'));
        ASSERT_EQ(r.status, 200u) << r.body;
        ASSERT_EQ(http_get(proxy->port(), "/api/download?bytes=300000", bearer(token)).status,
                  200u);
        hwm_before_kb = proxy->vm_hwm_kb();
        ASSERT_GT(hwm_before_kb, 0);
    }
    void expect_flat_memory() {
        long after = proxy->vm_hwm_kb();
        RecordProperty("proxy_peak_rss_growth_kib", std::to_string(after - hwm_before_kb));
        std::cout << "proxy peak RSS: " << hwm_before_kb << " KiB -> " << after << " KiB\n";
        EXPECT_LT(after - hwm_before_kb, kMaxGrowthKb)
            << "peak RSS grew from " << hwm_before_kb << " KiB to " << after
            << " KiB: is the proxy buffering the body?";
    }

    // Sends `n` pattern bytes as the body of POST /api/echo and returns the response.
    http_response upload(std::uint64_t n, bool chunked) {
        http_connection c(proxy->port(), std::chrono::seconds(30));
        std::string head = "POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                           token + "\r\nContent-Type: application/octet-stream\r\n";
        head += chunked ? std::string("Transfer-Encoding: chunked\r\n")
                        : "Content-Length: " + std::to_string(n) + "\r\n";
        head += "\r\n";
        c.send_raw(head);
        std::vector<char> buf(256 * 1024);
        std::uint64_t sent = 0;
        while (sent < n) {
            std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), n - sent));
            fill_pattern(sent, buf.data(), k);
            if (chunked) {
                char size[32];
                std::snprintf(size, sizeof size, "%zx\r\n", k);
                c.send_raw(size);
                c.send_raw(std::string_view(buf.data(), k));
                c.send_raw("\r\n");
            } else {
                c.send_raw(std::string_view(buf.data(), k));
            }
            sent += k;
        }
        if (chunked)
            c.send_raw("0\r\n\r\n");
        return c.read_response();
    }

    struct download_result {
        http_response response;
        std::uint64_t bytes = 0;
        std::string sha256;
    };
    download_result download(const std::string& target) {
        http_connection c(proxy->port(), std::chrono::seconds(30));
        c.send_raw("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                   token + "\r\n\r\n");
        download_result out;
        sha256_stream sha;
        out.response = c.read_response_streaming([&](std::string_view piece) {
            out.bytes += piece.size();
            sha.update(piece);
        });
        out.sha256 = sha.hex_digest();
        return out;
    }
};

TEST_F(StreamingTest, StreamsLargeUploadWithContentLength) {
    auto r = upload(kBig, false);
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json();
    EXPECT_EQ(j["body_bytes"].get<std::uint64_t>(), kBig);
    EXPECT_EQ(j["body_sha256"], pattern_sha256(kBig));
    expect_flat_memory();
}

TEST_F(StreamingTest, StreamsLargeChunkedUpload) {
    auto r = upload(kBig, true);
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json();
    EXPECT_EQ(j["body_bytes"].get<std::uint64_t>(), kBig);
    EXPECT_EQ(j["body_sha256"], pattern_sha256(kBig));
    expect_flat_memory();
}

TEST_F(StreamingTest, StreamsLargeDownloadWithContentLength) {
    auto d = download("/api/download?bytes=" + std::to_string(kBig));
    ASSERT_EQ(d.response.status, 200u);
    EXPECT_EQ(d.bytes, kBig);
    EXPECT_EQ(d.sha256, pattern_sha256(kBig));
    EXPECT_EQ(d.sha256, d.response.header("X-Body-Sha256"));
    expect_flat_memory();
}

TEST_F(StreamingTest, StreamsLargeChunkedDownload) {
    auto d = download("/api/download?chunked=1&bytes=" + std::to_string(kBig));
    ASSERT_EQ(d.response.status, 200u);
    EXPECT_EQ(d.bytes, kBig);
    EXPECT_EQ(d.sha256, pattern_sha256(kBig));
    expect_flat_memory();
}

TEST_F(StreamingTest, DeliversServerSentEventsAsTheyArrive) {
    http_connection c(proxy->port(), std::chrono::seconds(10));
    auto start = std::chrono::steady_clock::now();
    c.send_raw(
        "GET /api/drip?ms=2000 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        "Authorization: Bearer " +
        token + "\r\n\r\n");
    std::string body;
    long long first_event_ms = -1;
    auto r = c.read_response_streaming([&](std::string_view piece) {
        body.append(piece);
        if (first_event_ms < 0 && contains(body, "data: 1\n\n"))
            first_event_ms = elapsed_ms(start);
    });
    long long total_ms = elapsed_ms(start);
    EXPECT_EQ(r.status, 200u);
    EXPECT_TRUE(r.header("Content-Type").rfind("text/event-stream", 0) == 0) << r.headers_text();
    ASSERT_GE(first_event_ms, 0) << body;
    EXPECT_LT(first_event_ms, 1000) << "the first event waited for the rest of the stream";
    EXPECT_GE(total_ms, 1900);
    EXPECT_EQ(body, "data: 1\n\ndata: 2\n\ndata: done\n\n");
}

TEST_F(StreamingTest, SurvivesUpstreamResetMidBody) {
    // The upstream announces 1 MB, sends 1000 bytes and resets: the client must not get a
    // response that looks complete, and the proxy keeps serving.
    bool complete = false;
    try {
        http_connection c(proxy->port(), std::chrono::seconds(10));
        auto r = c.request(http::verb::get, "/api/reset", bearer(token));
        complete = r.status == 200u && r.body.size() == 1000000u;
    } catch (const std::exception&) {
        complete = false;  // truncated or closed: expected
    }
    EXPECT_FALSE(complete);
    EXPECT_EQ(http_get(proxy->port(), "/health").status, 200u);
    EXPECT_EQ(http_get(proxy->port(), "/api/echo", bearer(token)).status, 200u);
    EXPECT_TRUE(proxy->process().running());
}

TEST_F(StreamingTest, RelaysBodyDelimitedByConnectionClose) {
    // An upstream that sends neither Content-Length nor chunks ends the body by closing.
    auto d = download("/api/eof?bytes=100000");
    ASSERT_EQ(d.response.status, 200u);
    EXPECT_EQ(d.bytes, 100000u);
    EXPECT_EQ(d.sha256, pattern_sha256(100000));
    EXPECT_EQ(http_get(proxy->port(), "/api/echo", bearer(token)).status, 200u);
}

TEST_F(StreamingTest, StopsDownloadingWhenTheClientGoesAway) {
    {
        http_connection c(proxy->port(), std::chrono::seconds(10));
        c.send_raw("GET /api/download?bytes=" + std::to_string(kBig) +
                   " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\n\r\n");
        std::uint64_t got = 0;
        try {
            c.read_response_streaming([&](std::string_view piece) {
                got += piece.size();
                if (got >= 1024 * 1024)
                    throw std::runtime_error("enough");
            });
        } catch (const std::exception&) {
        }
        ASSERT_GE(got, 1024u * 1024u);
    }  // the client closes here, 49 MB early
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (upstream.aborted_downloads() == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(upstream.aborted_downloads(), 1u)
        << "the proxy kept reading the upstream body for a client that is gone";
    EXPECT_EQ(http_get(proxy->port(), "/api/echo", bearer(token)).status, 200u);
    expect_flat_memory();
}

TEST_F(StreamingTest, SurvivesClientAbortingUpload) {
    const std::size_t before = upstream.requests().size();  // the warm-up requests
    ASSERT_TRUE(upstream.wait_for_requests(before, std::chrono::seconds(5)));
    {
        http_connection c(proxy->port(), std::chrono::seconds(10));
        c.send_raw("POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token +
                   "\r\nContent-Length: 10000000\r\n\r\n");
        std::vector<char> buf(256 * 1024);
        fill_pattern(0, buf.data(), buf.size());
        for (int i = 0; i < 4; ++i)
            c.send_raw(std::string_view(buf.data(), buf.size()));
    }  // gone after 1 MB of 10
    // The upstream sees the body end early: the proxy closed that leg too.
    EXPECT_TRUE(upstream.wait_for_requests(before + 1, std::chrono::seconds(5)))
        << "the upstream still waits for the rest of an abandoned upload";
    auto reqs = upstream.requests();
    ASSERT_EQ(reqs.size(), before + 1);
    EXPECT_FALSE(reqs.back().complete);
    EXPECT_LT(reqs.back().body_bytes, 10000000u);
    EXPECT_EQ(http_get(proxy->port(), "/api/echo", bearer(token)).status, 200u);
    EXPECT_TRUE(proxy->process().running());
}

}  // namespace
