// Malformed and hostile requests on raw sockets: 400, and the proxy goes on serving.
#include <gtest/gtest.h>

#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;

namespace {

class MalformedRequestTest : public proxy_fixture<beast_upstream> {
  protected:
    void SetUp() override { start_proxy({.base_path = "/base", .register_token = true}); }

    std::string host() const { return "Host: 127.0.0.1:" + std::to_string(proxy->port()) + "\r\n"; }
    std::string auth() const { return "Authorization: Bearer " + token + "\r\n"; }

    // Sends bytes on a fresh connection and reads one response (status 0 when the proxy
    // closed the connection without answering).
    http_response send(const std::string& bytes, bool* closed_after = nullptr) {
        std::optional<std::string> why;
        auto r = raw_exchange(proxy->port(), bytes, closed_after, &why);
        if (why)
            ADD_FAILURE() << "no HTTP response: " << *why;
        return r;
    }

    void expect_still_serving() {
        EXPECT_TRUE(proxy->process().running());
        EXPECT_EQ(http_get(proxy->port(), "/health").status, 200u);
        auto before = upstream.request_count();
        auto r = http_get(proxy->port(), "/api/echo", bearer(token));
        EXPECT_EQ(r.status, 200u) << r.body;
        EXPECT_EQ(upstream.request_count(), before + 1);
    }
};

TEST_F(MalformedRequestTest, RejectsGarbageRequestLine) {
    auto r = send("THIS IS NOT HTTP AT ALL\r\n\r\n");
    EXPECT_EQ(r.status, 400u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsBinaryNoise) {
    std::string noise;
    for (int i = 0; i < 512; ++i)
        noise.push_back(static_cast<char>((i * 37 + 11) & 0xff));
    noise += "\r\n\r\n";
    auto r = send(noise);
    EXPECT_EQ(r.status, 400u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsBadHeaderSyntax) {
    auto r =
        send("GET /api/echo HTTP/1.1\r\n" + host() + auth() + "This header has no colon\r\n\r\n");
    EXPECT_EQ(r.status, 400u);
    EXPECT_EQ(upstream.request_count(), 0u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsContentLengthWithTransferEncodingAndCloses) {
    bool closed = false;
    auto r = send("POST /api/echo HTTP/1.1\r\n" + host() + auth() +
                      "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\n\r\n",
                  &closed);
    EXPECT_EQ(r.status, 400u);
    EXPECT_TRUE(closed) << "a request that could be smuggled must close the connection";
    EXPECT_EQ(upstream.request_count(), 0u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsDifferingContentLengths) {
    bool closed = false;
    auto r = send("POST /api/echo HTTP/1.1\r\n" + host() + auth() +
                      "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                  &closed);
    EXPECT_EQ(r.status, 400u);
    EXPECT_TRUE(closed);
    EXPECT_EQ(upstream.request_count(), 0u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsInvalidChunkEncoding) {
    bool closed = false;
    auto r = send("POST /api/echo HTTP/1.1\r\n" + host() + auth() +
                      "Transfer-Encoding: chunked\r\n\r\n"
                      "zz\r\nhello\r\n0\r\n\r\n",
                  &closed);
    EXPECT_EQ(r.status, 400u);
    EXPECT_TRUE(closed);
    // The header went upstream before the bad chunk was read; let it land before counting.
    upstream.wait_for_requests(1, std::chrono::seconds(2));
    // Whatever reached the upstream, it never got a complete request out of it.
    for (auto& rec : upstream.requests())
        EXPECT_FALSE(rec.complete) << rec.target;
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsPathTraversal) {
    for (std::string target : {"/api/../x", "/api/a/../../x", "/api/./../register"}) {
        SCOPED_TRACE(target);
        auto r = send("GET " + target + " HTTP/1.1\r\n" + host() + auth() + "\r\n");
        EXPECT_EQ(r.status, 400u);
    }
    EXPECT_EQ(upstream.request_count(), 0u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsPercentEncodedPathTraversal) {
    // %2e%2e is "..": an upstream that decodes it would leave the base path.
    for (std::string target : {"/api/%2e%2e/x", "/api/%2E%2E/%2e%2e/x", "/api/a/.%2e/%2e./x"}) {
        SCOPED_TRACE(target);
        auto r = send("GET " + target + " HTTP/1.1\r\n" + host() + auth() + "\r\n");
        EXPECT_EQ(r.status, 400u);
    }
    EXPECT_EQ(upstream.request_count(), 0u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsTraversalHiddenBehindEncodedSlash) {
    // "%2e%2e%2f%2e%2e" decodes to "../..": an upstream that decodes %2F before resolving dot
    // segments (WSGI's PATH_INFO is decoded, for one) would leave the base path.
    auto r =
        send("GET /api/a/b/%2e%2e%2f%2e%2e%2f%2e%2e/x HTTP/1.1\r\n" + host() + auth() + "\r\n");
    EXPECT_EQ(r.status, 400u);
    EXPECT_EQ(upstream.request_count(), 0u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsAbsoluteFormTargetForAnotherHost) {
    auto r = send("GET http://evil.example/api/echo HTTP/1.1\r\nHost: evil.example\r\n" + auth() +
                  "\r\n");
    EXPECT_GE(r.status, 400u);
    EXPECT_LT(r.status, 500u);
    EXPECT_EQ(upstream.request_count(), 0u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, RejectsOversizedHeader) {
    auto r = send("GET /api/echo HTTP/1.1\r\n" + host() + auth() +
                  "X-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n");
    EXPECT_TRUE(r.status == 431u || r.status == 400u) << r.status;
    EXPECT_EQ(upstream.request_count(), 0u);
    expect_still_serving();
}

TEST_F(MalformedRequestTest, AnswersHttp10RequestAndCloses) {
    http_connection c(proxy->port(), std::chrono::seconds(5));
    c.send_raw("GET /health HTTP/1.0\r\n\r\n");
    auto r = c.read_response();
    EXPECT_EQ(r.status, 200u);
    EXPECT_TRUE(c.wait_for_close(std::chrono::seconds(3)));
    expect_still_serving();
}

}  // namespace
