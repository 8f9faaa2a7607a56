#include "ratelimit_proxy/metering/usage.hpp"

#include <string>

namespace ratelimit_proxy::metering {

namespace {

bool ends_with_segment(std::string_view path, std::string_view tail) {
    return path.size() >= tail.size() && path.substr(path.size() - tail.size()) == tail &&
           (path.size() == tail.size() || path[path.size() - tail.size() - 1] == '/');
}

// The path as an upstream routes it: percent-escapes decoded, runs of '/' as one, so that
// "/chat/completion%73" or "/chat//completions" cannot slip past a budget.
std::string normalized(std::string_view path) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        char c = path[i];
        if (c == '%' && i + 2 < path.size() && hex(path[i + 1]) >= 0 && hex(path[i + 2]) >= 0) {
            c = static_cast<char>(hex(path[i + 1]) * 16 + hex(path[i + 2]));
            i += 2;
        }
        if (c == '/' && !out.empty() && out.back() == '/')
            continue;
        out.push_back(c);
    }
    while (!out.empty() && out.back() == '/')
        out.pop_back();
    return out;
}

}  // namespace

dialect dialect_of(std::string_view raw_path) {
    const std::string decoded = normalized(raw_path);
    std::string_view path = decoded;
    if (ends_with_segment(path, "chat/completions"))
        return dialect::chat_completions;
    if (ends_with_segment(path, "responses"))
        return dialect::responses;
    if (ends_with_segment(path, "messages"))
        return dialect::messages;
    if (ends_with_segment(path, "embeddings"))
        return dialect::embeddings;
    return dialect::none;
}

std::string_view to_string(dialect d) {
    switch (d) {
        case dialect::chat_completions:
            return "chat_completions";
        case dialect::responses:
            return "responses";
        case dialect::messages:
            return "messages";
        case dialect::embeddings:
            return "embeddings";
        case dialect::none:
            break;
    }
    return "none";
}

}  // namespace ratelimit_proxy::metering
