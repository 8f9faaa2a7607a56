#pragma once

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace ratelimit_proxy::config {

struct settings;

// One row per setting: how the JSON file, the environment, validation, error messages and
// --help know it. Adding a setting is its member in `settings` (which holds the default) and
// one row in src/config/settings_table.cpp.
struct setting {
    std::string_view path{};      // in the JSON file: "upstream.url", "log_level"
    std::string_view variable{};  // environment variable, "" for none
    std::string_view help{};      // --help text of the variable; '\n' continues on the next line
    // Reads the JSON value at `field` (the path). Null for a part of a structured field that
    // reads it (registration.mode is read with "registration").
    std::function<void(const nlohmann::json& value, const std::string& field, settings& s)>
        read_json{};
    // Reads the variable's text (null without a variable).
    std::function<void(const std::string& text, const std::string& variable, settings& s)>
        read_variable{};
    // Checks the value once the file and the environment are in, throwing config_error under
    // `label`; may keep what it parsed in s (the listen addresses). Null: reading checks it all.
    std::function<void(settings& s, const std::string& label)> check{};
};

// In the JSON file's order: sections, then top-level fields.
const std::vector<setting>& settings_table();

// How messages name a setting: "RATE_LIMIT (rate_limit.requests_per_minute)", or the path
// alone ("server.max_header_bytes") when it has no variable.
std::string label(const setting& s);
// The label of the row at `path`; any other path (a field inside "policies") as it is.
std::string label_of(std::string_view path);

}  // namespace ratelimit_proxy::config
