#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace rlp_test {

struct sdk_result {
    int exit_code = -1;   // the script's exit code; 128+signal when killed; -1 if it never ran
    std::string output;   // what it printed, stdout and stderr together
    nlohmann::json json;  // its last output line that is a JSON object; null when none is
    bool timed_out = false;
};

// Runs `node <script> <mode>` in tests/sdk (a relative script path is taken from there) with
// PROXY_URL=base_url and PROXY_TOKEN=token (and extra_env) added to this environment, as a
// child_process; waits up to `timeout`, then kills it. See tests/sdk/README.md.
sdk_result run_sdk_script(std::string script, std::string mode, std::string base_url,
                          std::string token,
                          std::vector<std::pair<std::string, std::string>> extra_env = {},
                          std::chrono::milliseconds timeout = std::chrono::seconds(120));

// node is on PATH and tests/sdk/node_modules/openai is installed (scripts/test.sh runs npm ci).
bool sdk_available();

// RLP_SOURCE_DIR/tests/sdk
std::string sdk_dir();

}  // namespace rlp_test
