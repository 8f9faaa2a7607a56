#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "http_client.hpp"
#include "process.hpp"

namespace rlp_test {

using env_list = std::vector<std::pair<std::string, std::string>>;

struct proxy_options {
    std::string target_url;             // TARGET_API_URL ("" leaves it unset)
    std::string redis_url;              // REDIS_URL ("" leaves it unset)
    env_list env;                       // more variables; later entries win
    std::optional<std::string> config;  // JSON text, written to a file and passed as --config
    std::vector<std::string> args;      // more arguments
    std::uint16_t port = 0;             // 0: a free port (BIND_ADDRESS=127.0.0.1:PORT)
    bool wait_ready = true;             // wait until GET /health answers 200
    // Then also until GET /ready answers 200 several times in a row on fresh connections (so
    // every worker thread's Redis connection is likely up), as a load balancer would.
    bool wait_redis_ready = true;
};

// The daemon under test (RLP_PROXY_BINARY) as a child process; output goes to a log file.
// Defaults: THREADS=2, LOG_LEVEL=info. The destructor sends SIGTERM (then SIGKILL).
class proxy_process {
  public:
    explicit proxy_process(proxy_options options);
    ~proxy_process();

    std::uint16_t port() const { return port_; }
    pid_t pid() const { return process_->pid(); }
    child_process& process() { return *process_; }
    std::string log() const { return process_->read_log(); }
    bool wait_healthy(std::chrono::milliseconds timeout);
    bool wait_redis_ready(std::chrono::milliseconds timeout, int consecutive = 4);

    // From /proc/<pid>/status, in KiB (-1 when unavailable).
    long vm_rss_kb() const;
    long vm_hwm_kb() const;

  private:
    std::uint16_t port_;
    std::string dir_;
    std::unique_ptr<child_process> process_;
};

struct exit_result {
    int code = -1;  // -1: still running after the timeout (then killed)
    std::string output;
};

// Runs the daemon with exactly these arguments and variables (the known RLP variables of the
// test process itself are removed first) and waits for it to exit.
exit_result run_proxy_to_exit(const std::vector<std::string>& args, const env_list& env,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Removes TARGET_API_URL, RATE_LIMIT, ... from this (test) process's environment, so children
// see only what a test sets.
void clear_proxy_environment();

// POST /register; returns the token, or throws with the status and body.
std::string register_token(std::uint16_t proxy_port);
header_list bearer(const std::string& token, header_list more = {});

// Writes text to a fresh file in a temp directory and returns its path.
std::string write_temp_file(const std::string& name, const std::string& text);

}  // namespace rlp_test
