#include "sdk_runner.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "process.hpp"

namespace rlp_test {

namespace {

bool is_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The first executable `name` on PATH, "" if none.
std::string find_on_path(std::string_view name) {
    const char* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/local/bin:/usr/bin:/bin";
    while (!rest.empty()) {
        auto colon = rest.find(':');
        std::string dir(rest.substr(0, colon));
        std::string candidate = (dir.empty() ? "." : dir) + "/" + std::string(name);
        if (is_file(candidate) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        if (colon == std::string_view::npos)
            break;
        rest.remove_prefix(colon + 1);
    }
    return {};
}

// The script's verdict: its last output line that is a JSON object (node's own warnings go
// to the same log, before it).
nlohmann::json last_json_line(const std::string& text) {
    std::size_t end = text.size();
    while (end > 0) {
        const auto start = text.rfind('\n', end - 1);
        const auto from = start == std::string::npos ? 0 : start + 1;
        auto j = nlohmann::json::parse(text.substr(from, end - from), nullptr, false);
        if (j.is_object())
            return j;
        if (start == std::string::npos)
            break;
        end = start;
    }
    return nullptr;
}

}  // namespace

std::string sdk_dir() {
    return std::string(RLP_SOURCE_DIR) + "/tests/sdk";
}

bool sdk_available() {
    return !find_on_path("node").empty() &&
           is_file(sdk_dir() + "/node_modules/openai/package.json");
}

sdk_result run_sdk_script(std::string script, std::string mode, std::string base_url,
                          std::string token,
                          std::vector<std::pair<std::string, std::string>> extra_env,
                          std::chrono::milliseconds timeout) {
    sdk_result result;
    const std::string node = find_on_path("node");
    if (node.empty()) {
        result.output = "node not found on PATH";
        return result;
    }
    // env -C: node runs in tests/sdk, where its node_modules are.
    std::vector<std::string> argv{"env", "-C", sdk_dir(), node, std::move(script)};
    if (!mode.empty())
        argv.push_back(std::move(mode));
    extra_env.emplace_back("PROXY_URL", std::move(base_url));
    extra_env.emplace_back("PROXY_TOKEN", std::move(token));
    const std::string log = "/tmp/rlp-sdk-" + random_hex(8) + ".log";
    {
        child_process child(std::move(argv), std::move(extra_env), log);
        result.exit_code = child.wait_exit(timeout);
        if (result.exit_code == -1) {
            result.timed_out = true;
            child.send_signal(SIGKILL);
            result.exit_code = child.wait_exit(std::chrono::seconds(5));
        }
        result.output = child.read_log();
    }
    std::remove(log.c_str());
    result.json = last_json_line(result.output);
    return result;
}

}  // namespace rlp_test
