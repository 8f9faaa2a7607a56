#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rlp_test {

// A child process started with fork/exec; stdout and stderr go to log_path (or /dev/null).
// The destructor sends SIGTERM, waits up to 5 s, then SIGKILLs.
class child_process {
  public:
    child_process(std::vector<std::string> argv,
                  std::vector<std::pair<std::string, std::string>> extra_env = {},
                  std::string log_path = {});
    ~child_process();
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    pid_t pid() const { return pid_; }
    void send_signal(int sig) const;
    bool running();
    // Exit code, 128+signal when killed, or -1 if it did not exit within the timeout.
    int wait_exit(std::chrono::milliseconds timeout);
    const std::string& log_path() const { return log_path_; }
    std::string read_log() const;

  private:
    pid_t pid_ = -1;
    int status_ = -1;
    bool reaped_ = false;
    std::string log_path_;
};

// A TCP port on 127.0.0.1 that nothing listens on right now.
std::uint16_t free_port();
bool wait_for_port(std::uint16_t port, std::chrono::milliseconds timeout);
std::string temp_dir();  // a fresh directory under /tmp, removed by nobody (tests are short)
std::string random_hex(std::size_t bytes);

}  // namespace rlp_test
