#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/settings_table.hpp"
#include "ratelimit_proxy/server/logging.hpp"
#include "ratelimit_proxy/server/server.hpp"

namespace {

constexpr const char* usage = R"(Usage: ratelimit-proxy [--config FILE] [--check-config]
       ratelimit-proxy --help | --version

A reverse proxy that authenticates bearer tokens from POST /register, checks every request
against its rate limit policies in one Redis call, and relays /api/* to TARGET_API_URL with
TARGET_API_KEY injected. Policies, tiers and lists come from the config file (SIGHUP reloads
it) and from the admin API.

Options:
  --config FILE    JSON configuration (see config/ratelimit-proxy.json); the environment
                   overrides it
  --check-config   validate the configuration, print it without secrets, and exit
  --help           this text
  --version        the version

)";

// "  NAME   text", the text's further lines indented under its first.
std::string environment_help() {
    namespace config = ratelimit_proxy::config;
    constexpr std::size_t name_width = 21;
    std::string out = "Environment:\n";
    for (const auto& row : config::settings_table()) {
        if (row.variable.empty())
            continue;
        std::string name(row.variable);
        name.resize(std::max(name_width, name.size()), ' ');
        std::string text(row.help);
        for (std::size_t at = text.find('\n'); at != std::string::npos;
             at = text.find('\n', at + 1))
            text.insert(at + 1, std::string(2 + name_width + 2, ' '));
        out += "  " + name + "  " + text + "\n";
    }
    return out;
}

constexpr const char* exit_codes = R"(
Exit codes: 0 clean shutdown, 1 runtime failure (e.g. the port is taken), 2 bad configuration.
)";

// Every connection costs a descriptor (two while proxied): take what the hard limit allows.
void raise_descriptor_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

}  // namespace

int main(int argc, char** argv) {
    namespace config = ratelimit_proxy::config;
    std::optional<std::string> config_path;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::cout << usage << environment_help() << exit_codes;
            return 0;
        }
        if (arg == "--version") {
            std::cout << "ratelimit-proxy " << RLP_VERSION << "\n";
            return 0;
        }
        if (arg == "--check-config") {
            check_only = true;
        } else if (arg == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (arg.rfind("--config=", 0) == 0) {
            config_path = arg.substr(9);
        } else {
            std::cerr << "ratelimit-proxy: unknown argument \"" << arg << "\" (see --help)\n";
            return 2;
        }
    }

    config::settings settings;
    try {
        settings = config::load(config_path, config::process_environment());
    } catch (const config::config_error& e) {
        std::cerr << "ratelimit-proxy: invalid configuration: " << e.what() << "\n";
        return 2;
    }
    if (check_only) {
        std::cout << "configuration ok: upstream " << settings.upstream.url << ", "
                  << settings.policies.size() << " polic"
                  << (settings.policies.size() == 1 ? "y" : "ies") << ", listening on "
                  << settings.server.bind_address << "\n";
        return 0;
    }

    // hiredis writes with plain write(): a Redis that vanished must not kill the process.
    std::signal(SIGPIPE, SIG_IGN);
    raise_descriptor_limit();
    ratelimit_proxy::server::setup_logging(settings.log_level, settings.log_format);
    int code = 1;
    try {
        // SIGHUP reads the same file and environment again.
        ratelimit_proxy::server::server daemon(settings, [config_path] {
            return config::load(config_path, config::process_environment());
        });
        code = daemon.run();
    } catch (const std::exception& e) {
        spdlog::critical("fatal: {}", e.what());
        code = 1;
    }
    spdlog::shutdown();
    return code;
}
