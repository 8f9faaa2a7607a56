#include "ratelimit_proxy/metering/request_info.hpp"

#include <limits>
#include <vector>

#include <nlohmann/json.hpp>

namespace ratelimit_proxy::metering {

namespace {

using json = nlohmann::json;

// The max tokens field prepare_request adds for `d`, or empty (embeddings have none).
std::string_view own_max_field(dialect d) {
    switch (d) {
        case dialect::chat_completions:
            return "max_completion_tokens";
        case dialect::responses:
            return "max_output_tokens";
        case dialect::messages:
            return "max_tokens";
        case dialect::embeddings:
        case dialect::none:
            break;
    }
    return {};
}

bool present(const json& doc, std::string_view key) {
    const auto it = doc.find(key);
    return it != doc.end() && !it->is_null();
}

// A max tokens field: absent or null is fine; anything but a non-negative integer is not.
bool read_max(const json& doc, std::string_view key, request_info& info, std::string& error) {
    if (!present(doc, key))
        return true;
    const json& v = doc.find(key).value();
    std::int64_t n = -1;
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            n = static_cast<std::int64_t>(u);
    } else if (v.is_number_integer()) {
        n = v.get<std::int64_t>();
    }
    // No model writes a billion tokens; a larger bound would only overflow the reservation.
    constexpr std::int64_t max_output_tokens = 1'000'000'000;
    if (n < 0 || n > max_output_tokens) {
        error = "\"" + std::string(key) + "\" must be an integer from 0 to 1000000000";
        return false;
    }
    info.max_output = info.max_output ? std::min(*info.max_output, n) : n;
    return true;
}

// Chat completions' "n": that many choices, each up to the max tokens.
bool read_choices(const json& doc, request_info& info, std::string& error) {
    if (!present(doc, "n"))
        return true;
    const json& v = doc.find("n").value();
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > 128) {
        error = "\"n\" must be an integer from 1 to 128";
        return false;
    }
    info.choices = v.get<std::int64_t>();
    return true;
}

bool is_image_part(const json& object) {
    const auto it = object.find("type");
    if (it == object.end() || !it->is_string())
        return false;
    const auto& type = it->get_ref<const std::string&>();
    return type == "image_url" || type == "input_image" || type == "image";
}

// Image parts anywhere under "messages" / "input" (tool results nest content too). An explicit
// stack: a deeply nested body must not overflow ours.
std::int64_t image_parts(const json& doc) {
    std::int64_t n = 0;
    std::vector<const json*> todo;
    for (const char* key : {"messages", "input"}) {
        const auto it = doc.find(key);
        if (it != doc.end() && it->is_structured())
            todo.push_back(&*it);
    }
    while (!todo.empty()) {
        const json& v = *todo.back();
        todo.pop_back();
        if (v.is_object() && is_image_part(v))
            ++n;
        for (const json& child : v)
            if (child.is_structured())
                todo.push_back(&child);
    }
    return n;
}

bool json_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Where the top-level object's '{' is (after whitespace and a UTF-8 byte order mark), or npos.
std::size_t object_start(std::string_view body) {
    std::size_t i = 0;
    if (body.starts_with("\xEF\xBB\xBF"))
        i = 3;
    while (i < body.size() && json_space(body[i]))
        ++i;
    return i < body.size() && body[i] == '{' ? i : std::string_view::npos;
}

}  // namespace

std::optional<request_info> read_request(dialect d, std::string_view body, std::string& error) {
    if (d == dialect::none) {
        error = "not a metered API request";
        return std::nullopt;
    }
    const json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
        error = "request body is not valid JSON";
        return std::nullopt;
    }
    if (!doc.is_object()) {
        error = "request body is not a JSON object";
        return std::nullopt;
    }
    request_info info;
    info.kind = d;
    if (present(doc, "model")) {
        const json& model = doc["model"];
        if (!model.is_string()) {
            error = "\"model\" must be a string";
            return std::nullopt;
        }
        info.model = model.get<std::string>();
    }
    if (d != dialect::embeddings && present(doc, "stream")) {
        const json& stream = doc["stream"];
        if (!stream.is_boolean()) {
            error = "\"stream\" must be a boolean";
            return std::nullopt;
        }
        info.stream = stream.get<bool>();
    }
    if (d == dialect::chat_completions) {
        info.has_stream_options = doc.contains("stream_options");
        if (present(doc, "stream_options")) {
            const json& options = doc["stream_options"];
            if (!options.is_object()) {
                error = "\"stream_options\" must be an object";
                return std::nullopt;
            }
            if (present(options, "include_usage")) {
                const json& include = options["include_usage"];
                if (!include.is_boolean()) {
                    error = "\"stream_options.include_usage\" must be a boolean";
                    return std::nullopt;
                }
                info.client_asked_usage = include.get<bool>();
            }
        }
    }
    switch (d) {
        case dialect::chat_completions:
            if (!read_max(doc, "max_tokens", info, error) ||
                !read_max(doc, "max_completion_tokens", info, error) ||
                !read_choices(doc, info, error))
                return std::nullopt;
            break;
        case dialect::responses:
            if (!read_max(doc, "max_output_tokens", info, error))
                return std::nullopt;
            break;
        case dialect::messages:
            if (!read_max(doc, "max_tokens", info, error))
                return std::nullopt;
            break;
        case dialect::embeddings:
        case dialect::none:
            break;
    }
    if (const std::string_view own = own_max_field(d); !own.empty())
        info.has_own_max_field = doc.contains(own);
    const std::int64_t images = d == dialect::embeddings ? 0 : image_parts(doc);
    info.input_bound = static_cast<std::int64_t>(body.size()) + images * image_token_allowance;
    return info;
}

std::int64_t output_bound(const request_info& info, std::int64_t default_max_output) {
    return info.max_output.value_or(default_max_output) * info.choices;
}

bool prepare_request(const request_info& info, std::string& body, std::int64_t default_max_output) {
    const bool add_usage = hides_usage_chunk(info);
    const std::string_view max_field = own_max_field(info.kind);
    const bool add_max = !max_field.empty() && !info.max_output;
    if (!add_usage && !add_max)
        return false;

    if ((add_usage && info.has_stream_options) || (add_max && info.has_own_max_field)) {
        // The key is there (an object to merge into, or null): change it in a re-serialised
        // body; ordered_json keeps the client's key order.
        auto doc = nlohmann::ordered_json::parse(body, nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded() || !doc.is_object())
            return false;
        if (add_usage) {
            auto& options = doc["stream_options"];
            if (!options.is_object())
                options = nlohmann::ordered_json::object();
            options["include_usage"] = true;
        }
        if (add_max)
            doc[std::string(max_field)] = default_max_output;
        body = doc.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
        return true;
    }

    // Absent keys: insert them as text right after the top-level '{', leaving every other byte
    // of the body as the client sent it.
    const std::size_t brace = object_start(body);
    if (brace == std::string::npos)
        return false;
    std::string fields;
    if (add_usage)
        fields += R"("stream_options":{"include_usage":true})";
    if (add_max) {
        if (!fields.empty())
            fields += ',';
        fields += '"';
        fields += max_field;
        fields += "\":";
        fields += std::to_string(default_max_output);
    }
    std::size_t next = brace + 1;
    while (next < body.size() && json_space(body[next]))
        ++next;
    if (next >= body.size() || body[next] != '}')
        fields += ',';
    body.insert(brace + 1, fields);
    return true;
}

bool hides_usage_chunk(const request_info& info) {
    return info.kind == dialect::chat_completions && info.stream && !info.client_asked_usage;
}

}  // namespace ratelimit_proxy::metering
