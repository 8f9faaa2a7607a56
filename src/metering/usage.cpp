#include "ratelimit_proxy/metering/usage.hpp"

namespace ratelimit_proxy::metering {

namespace {

bool ends_with_segment(std::string_view path, std::string_view tail) {
    return path.size() >= tail.size() && path.substr(path.size() - tail.size()) == tail &&
           (path.size() == tail.size() || path[path.size() - tail.size() - 1] == '/');
}

}  // namespace

dialect dialect_of(std::string_view path) {
    while (!path.empty() && path.back() == '/')
        path.remove_suffix(1);
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
