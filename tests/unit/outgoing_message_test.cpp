#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <sstream>
#include <string>

#include "ratelimit_proxy/proxy/outgoing_message.hpp"

namespace proxy = ratelimit_proxy::proxy;
namespace http = boost::beast::http;
namespace asio = boost::asio;

// Concatenates what prepare() hands to the socket.
std::string wire(proxy::outgoing_message& m, std::string_view body, bool last) {
    std::string out;
    for (const auto& b : m.prepare(body.data(), body.size(), last))
        out.append(static_cast<const char*>(b.data()), b.size());
    return out;
}

// Beast's own serialization of a header, the reference the writer must match byte for byte.
template <bool is_request>
std::string beast_header(const http::header<is_request>& h) {
    std::ostringstream os;
    os << h;
    return os.str();
}

class OutgoingMessage : public ::testing::Test {
  protected:
    proxy::outgoing_message m_;
};

TEST_F(OutgoingMessage, RequestHeaderMatchesBeastSerialization) {
    http::request<http::string_body> req{http::verb::post, "/v1/chat?x=1", 11};
    req.set(http::field::host, "api.example.com");
    req.set("X-Custom", "a, b");
    req.set(http::field::content_length, "5");
    m_.start(req.base());
    EXPECT_EQ(m_.header_text(), beast_header(req.base()));
    EXPECT_FALSE(m_.chunked());
    EXPECT_EQ(wire(m_, "hello", true), beast_header(req.base()) + "hello");
    EXPECT_TRUE(m_.last_sent());
}

TEST_F(OutgoingMessage, UnknownMethodIsWrittenAsReceived) {
    http::request<http::string_body> req;
    req.method_string("PURGE");
    req.target("/cache");
    req.version(11);
    m_.start(req.base());
    EXPECT_EQ(m_.header_text().substr(0, 22), "PURGE /cache HTTP/1.1\r");
}

TEST_F(OutgoingMessage, ResponseHeaderMatchesBeastSerialization) {
    http::response<http::string_body> res{http::status::not_found, 10};
    res.set(http::field::server, "upstream");
    res.set(http::field::content_type, "text/plain");
    m_.start(res.base(), false);
    EXPECT_EQ(m_.header_text(), beast_header(res.base()));
    EXPECT_EQ(m_.header_text().substr(0, 24), "HTTP/1.0 404 Not Found\r\n");
}

TEST_F(OutgoingMessage, ResponseKeepsTheUpstreamsReasonPhrase) {
    http::response<http::string_body> res{http::status::ok, 11};
    res.reason("Fine");
    m_.start(res.base(), false);
    EXPECT_EQ(m_.header_text(), "HTTP/1.1 200 Fine\r\n\r\n");
}

TEST_F(OutgoingMessage, ExtraLinesGoBeforeTheBlankLine) {
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_length, "2");
    m_.start(res.base(), false, "X-RateLimit-Limit: 10\r\nX-RateLimit-Remaining: 9\r\n");
    EXPECT_EQ(wire(m_, "ok", true),
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-RateLimit-Limit: 10\r\n"
              "X-RateLimit-Remaining: 9\r\n\r\nok");
}

TEST_F(OutgoingMessage, ChunkedBodyIsFramedAndEndedOnce) {
    http::response<http::string_body> res{http::status::ok, 11};
    res.chunked(true);
    m_.start(res.base(), false);
    EXPECT_TRUE(m_.chunked());
    const std::string head = std::string(m_.header_text());
    EXPECT_EQ(wire(m_, "", false), head);  // the header alone, nothing framed
    EXPECT_TRUE(m_.header_sent());
    EXPECT_EQ(wire(m_, std::string(26, 'a'), false), "1a\r\n" + std::string(26, 'a') + "\r\n");
    EXPECT_FALSE(m_.last_sent());
    EXPECT_EQ(wire(m_, "xyz", true), "3\r\nxyz\r\n0\r\n\r\n");
    EXPECT_TRUE(m_.last_sent());
}

TEST_F(OutgoingMessage, ChunkedBodyEndingWithoutDataSendsOnlyTheLastChunk) {
    http::request<http::string_body> req{http::verb::put, "/x", 11};
    req.chunked(true);
    m_.start(req.base());
    wire(m_, "abc", false);
    EXPECT_EQ(wire(m_, "", true), "0\r\n\r\n");
}

TEST_F(OutgoingMessage, ChunkedIsReadFromTheLastTransferCoding) {
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::transfer_encoding, "gzip, Chunked");
    m_.start(res.base(), false);
    EXPECT_TRUE(m_.chunked());
    res.set(http::field::transfer_encoding, "chunked, gzip");
    m_.start(res.base(), false);
    EXPECT_FALSE(m_.chunked());
    // Two fields: the first decides, as message::chunked() reads it.
    res.insert(http::field::transfer_encoding, "chunked");
    m_.start(res.base(), false);
    EXPECT_EQ(m_.chunked(), res.chunked());
    EXPECT_FALSE(m_.chunked());
}

TEST_F(OutgoingMessage, BodilessResponseGetsNoFramingEvenWhenChunked) {
    // A response to HEAD says how the GET answer would be framed, but carries no body.
    http::response<http::string_body> res{http::status::ok, 11};
    res.chunked(true);
    m_.start(res.base(), true);
    EXPECT_EQ(wire(m_, "", true), std::string(m_.header_text()));
    EXPECT_TRUE(m_.last_sent());
}

TEST_F(OutgoingMessage, StartingAgainResetsTheState) {
    http::response<http::string_body> res{http::status::ok, 11};
    res.chunked(true);
    m_.start(res.base(), false);
    wire(m_, "abc", true);
    http::response<http::string_body> next{http::status::no_content, 11};
    m_.start(next.base(), false);
    EXPECT_FALSE(m_.header_sent());
    EXPECT_FALSE(m_.last_sent());
    EXPECT_FALSE(m_.chunked());
    EXPECT_EQ(wire(m_, "", true), "HTTP/1.1 204 No Content\r\n\r\n");
}
