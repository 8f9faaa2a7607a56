#include "ratelimit_proxy/config/config.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "json_reader.hpp"
#include "ratelimit_proxy/config/rule_overlay.hpp"
#include "ratelimit_proxy/config/settings_table.hpp"

namespace ratelimit_proxy::config {

namespace {

using detail::json;
using detail::object_reader;

std::pair<std::string_view, std::string_view> split_path(std::string_view path) {
    const auto dot = path.find('.');
    if (dot == std::string_view::npos)
        return {{}, path};
    return {path.substr(0, dot), path.substr(dot + 1)};
}

}  // namespace

environment process_environment() {
    environment env;
    for (const auto& row : settings_table()) {
        if (row.variable.empty())
            continue;
        const std::string name(row.variable);
        if (const char* value = std::getenv(name.c_str()))
            env[name] = value;
    }
    return env;
}

settings parse_json(const std::string& json_text, const std::string& origin) {
    json root;
    try {
        root = json::parse(json_text);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for 1e999
        throw config_error(origin, std::string("invalid JSON: ") + e.what());
    }
    settings s;
    const auto& table = settings_table();
    auto reader_of = [&s](const setting& row) {
        return [&s, &row](const json& v, const std::string& field) { row.read_json(v, field, s); };
    };
    object_reader top(root, "");
    std::vector<std::string_view> sections_read;
    for (const auto& row : table) {
        if (!row.read_json)
            continue;
        const std::pair<std::string_view, std::string_view> parts = split_path(row.path);
        // Not a structured binding: clang 14 cannot capture one in the lambda below.
        const std::string_view section = parts.first;
        const std::string_view name = parts.second;
        if (section.empty()) {
            top.field(std::string(name), reader_of(row));
            continue;
        }
        // A section is read whole where its first row stands, its unknown fields rejected.
        if (std::find(sections_read.begin(), sections_read.end(), section) != sections_read.end())
            continue;
        sections_read.push_back(section);
        top.section(std::string(section), [&](object_reader& r) {
            for (const auto& member : table) {
                const auto [member_section, member_name] = split_path(member.path);
                if (member.read_json && member_section == section)
                    r.field(std::string(member_name), reader_of(member));
            }
        });
    }
    top.reject_unknown();
    return s;
}

void apply_environment(settings& s, const environment& env) {
    for (const auto& row : settings_table()) {
        if (row.variable.empty())
            continue;
        const std::string name(row.variable);
        if (auto it = env.find(name); it != env.end())
            row.read_variable(it->second, name, s);
    }
}

void validate(settings& s) {
    // Named by the variable most users set; the JSON path is in the README's table beside it.
    for (const auto& row : settings_table())
        if (row.check)
            row.check(s, label(row));
    // Tiers naming missing policies, bad CIDRs and the like: start-up errors, not surprises.
    try {
        build_rule_set(s, nlohmann::json());
    } catch (const config_error& e) {
        const std::string prefix = e.field() + ": ";
        throw config_error(label_of(e.field()), std::string(e.what()).substr(prefix.size()));
    }
}

limit::policy default_policy(const settings& s) {
    limit::policy p;
    p.name = "default";
    p.algo = limit::algorithm::token_bucket;
    p.key = limit::key_kind::token;
    p.numbers.limit = s.rate_limit.requests_per_minute;
    p.numbers.window_seconds = 60;
    p.numbers.burst = s.effective_burst();
    return p;
}

settings load(const std::optional<std::string>& file_path, const environment& env) {
    settings s;
    if (file_path) {
        std::ifstream in(*file_path);
        if (!in)
            throw config_error("--config", "cannot read \"" + *file_path + "\"");
        std::stringstream text;
        text << in.rdbuf();
        s = parse_json(text.str(), *file_path);
    }
    apply_environment(s, env);
    if (s.policies.empty())
        s.policies.push_back(default_policy(s));
    validate(s);
    return s;
}

unsigned worker_threads(const settings& s) {
    const unsigned threads =
        s.server.threads ? s.server.threads : std::thread::hardware_concurrency();
    return threads == 0 ? 1 : threads;
}

}  // namespace ratelimit_proxy::config
