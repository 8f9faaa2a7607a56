#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/message.hpp>

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace ratelimit_proxy::proxy {

namespace http = boost::beast::http;

// One message on its way out: the header serialized into one flat buffer, body pieces framed
// as the header says (raw, or chunked when Transfer-Encoding is chunked). A header and the
// first body bytes then leave in one gather write of a few buffers, instead of Beast's
// serializer walking a buffer per field name, value and separator on every write.
class outgoing_message {
  public:
    // Serializes the header; the next prepare() sends it first. A bodiless response (to HEAD,
    // 1xx, 204, 304) gets no body framing, whatever its Transfer-Encoding says. extra_lines
    // ("Name: value\r\n"...) go after the header's own fields: fields added without building
    // (and allocating) Beast field elements.
    void start(const http::request_header<>& header, std::string_view extra_lines = {});
    void start(const http::response_header<>& header, bool bodiless,
               std::string_view extra_lines = {});

    // The buffers to write next: the header if not yet out, then `size` body bytes framed
    // (size may be 0), then the end of the body if `last`. Valid until the next call.
    std::span<const boost::asio::const_buffer> prepare(const void* data, std::size_t size,
                                                       bool last);

    bool chunked() const { return chunked_; }
    bool header_sent() const { return !header_pending_; }
    bool last_sent() const { return last_sent_; }
    std::string_view header_text() const { return header_; }

  private:
    // After the start line: the fields, extra_lines, the blank line; then the body state.
    void finish_header(const http::fields& fields, std::string_view extra_lines, bool bodiless);

    std::string header_;  // kept across messages: its capacity is reused
    bool header_pending_ = false;
    bool chunked_ = false;
    bool bodiless_ = false;
    bool last_sent_ = false;
    std::array<char, 20> chunk_size_line_{};
    std::array<boost::asio::const_buffer, 4> buffers_{};
};

}  // namespace ratelimit_proxy::proxy
