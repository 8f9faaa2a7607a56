#include "ratelimit_proxy/proxy/outgoing_message.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <cstdio>

namespace ratelimit_proxy::proxy {

namespace asio = boost::asio;

namespace {

void append_version(std::string& out, unsigned version) {
    out.append("HTTP/");
    out.push_back(static_cast<char>('0' + version / 10));
    out.push_back('.');
    out.push_back(static_cast<char>('0' + version % 10));
}

// As message::chunked(): the last transfer coding of the (first) Transfer-Encoding field is
// chunked.
bool chunked_coding(std::string_view transfer_encoding) {
    const http::token_list codings{transfer_encoding};
    boost::beast::string_view last;
    for (const auto coding : codings)
        last = coding;
    return boost::beast::iequals(last, "chunked");
}

constexpr std::string_view crlf = "\r\n";
constexpr std::string_view last_chunk = "0\r\n\r\n";
constexpr std::string_view crlf_last_chunk = "\r\n0\r\n\r\n";

}  // namespace

void outgoing_message::finish_header(const http::fields& fields, std::string_view extra_lines,
                                     bool bodiless) {
    // The framing is read on the way, not looked up again in the fields.
    const http::fields::value_type* transfer_encoding = nullptr;
    for (const auto& f : fields) {
        header_.append(f.name_string()).append(": ").append(f.value()).append(crlf);
        if (!transfer_encoding && f.name() == http::field::transfer_encoding)
            transfer_encoding = &f;
    }
    header_.append(extra_lines).append(crlf);
    header_pending_ = true;
    chunked_ = transfer_encoding && chunked_coding(transfer_encoding->value());
    bodiless_ = bodiless;
    last_sent_ = false;
}

void outgoing_message::start(const http::request_header<>& header, std::string_view extra_lines) {
    header_.clear();
    header_.append(header.method_string()).push_back(' ');
    header_.append(header.target()).push_back(' ');
    append_version(header_, header.version());
    header_.append(crlf);
    finish_header(header, extra_lines, false);
}

void outgoing_message::start(const http::response_header<>& header, bool bodiless,
                             std::string_view extra_lines) {
    header_.clear();
    append_version(header_, header.version());
    const unsigned code = header.result_int();
    header_.push_back(' ');
    header_.push_back(static_cast<char>('0' + code / 100 % 10));
    header_.push_back(static_cast<char>('0' + code / 10 % 10));
    header_.push_back(static_cast<char>('0' + code % 10));
    header_.push_back(' ');
    header_.append(header.reason()).append(crlf);
    finish_header(header, extra_lines, bodiless);
}

std::span<const asio::const_buffer> outgoing_message::prepare(const void* data, std::size_t size,
                                                              bool last) {
    std::size_t n = 0;
    if (header_pending_) {
        buffers_[n++] = asio::buffer(header_);
        header_pending_ = false;
    }
    if (bodiless_) {
        // Nothing follows the header.
    } else if (!chunked_) {
        if (size > 0)
            buffers_[n++] = asio::const_buffer(data, size);
    } else {
        if (size > 0) {
            const int len =
                std::snprintf(chunk_size_line_.data(), chunk_size_line_.size(), "%zx\r\n", size);
            buffers_[n++] = asio::const_buffer(chunk_size_line_.data(), len);
            buffers_[n++] = asio::const_buffer(data, size);
            buffers_[n++] = asio::buffer(last ? crlf_last_chunk : crlf);
        } else if (last) {
            buffers_[n++] = asio::buffer(last_chunk);
        }
    }
    if (last)
        last_sent_ = true;
    return {buffers_.data(), n};
}

}  // namespace ratelimit_proxy::proxy
