#include "ratelimit_proxy/server/logging.hpp"

#include <spdlog/formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>

namespace ratelimit_proxy::server {

const char access_line_source[] = "access";

namespace {

// One JSON object per line: {"time","level","message"}, or an access line as it was
// formatted (an object), with "time" put in front of its fields.
class json_formatter final : public spdlog::formatter {
  public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        line_.clear();
        line_.append("{\"time\":\"");
        append_utc_time(line_, msg.time);
        line_.push_back('"');
        const std::string_view payload(msg.payload.data(), msg.payload.size());
        if (msg.source.filename == access_line_source && payload.size() > 2 &&
            payload.front() == '{') {
            line_.push_back(',');
            line_.append(payload.substr(1));
        } else {
            line_.append(",\"level\":\"");
            const auto level = spdlog::level::to_string_view(msg.level);
            line_.append(level.data(), level.size());
            line_.append("\",\"message\":\"");
            append_json_escaped(line_, payload);
            line_.append("\"}");
        }
        line_.push_back('\n');
        dest.append(line_.data(), line_.data() + line_.size());
    }

    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<json_formatter>();
    }

  private:
    std::string line_;  // called under the sink's mutex: one buffer, its capacity kept
};

// stdout, one formatted line per write, into a buffer kept from line to line: spdlog's own
// sinks format into a fresh 250-byte stack buffer, and a JSON access line is longer, so they
// would allocate once per request.
class stdout_line_sink final : public spdlog::sinks::base_sink<std::mutex> {
  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        buffer_.clear();
        formatter_->format(msg, buffer_);
        std::fwrite(buffer_.data(), 1, buffer_.size(), stdout);
    }
    void flush_() override { std::fflush(stdout); }

  private:
    spdlog::memory_buf_t buffer_;
};

}  // namespace

void append_json_escaped(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(ch);
        } else if (c >= 0x20 && c < 0x7f) {
            out.push_back(ch);
        } else if (c == '\n') {
            out.append("\\n");
        } else {
            out.append("\\u00");
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
    }
}

void append_utc_time(std::string& out, std::chrono::system_clock::time_point t) {
    const auto since = t.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since - seconds).count();
    const std::time_t tt = static_cast<std::time_t>(seconds.count());
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char text[32];
    const auto n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    out.append(text, n);
    out.push_back('.');
    out.push_back(static_cast<char>('0' + millis / 100));
    out.push_back(static_cast<char>('0' + millis / 10 % 10));
    out.push_back(static_cast<char>('0' + millis % 10));
    out.push_back('Z');
}

void setup_logging(const std::string& level, const std::string& format) {
    // Synchronous, behind the sink's mutex: spdlog 1.10's async logger races its own pool
    // thread at exit (ThreadSanitizer shows it). Lines are flushed once a second.
    std::shared_ptr<spdlog::sinks::sink> sink;
    if (format == "json") {
        sink = std::make_shared<stdout_line_sink>();
        sink->set_formatter(std::make_unique<json_formatter>());
    } else {
        sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
    }
    auto logger = std::make_shared<spdlog::logger>("ratelimit-proxy", std::move(sink));
    logger->set_level(spdlog::level::from_str(level));
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(logger);
    spdlog::flush_every(std::chrono::seconds(1));
}

}  // namespace ratelimit_proxy::server
