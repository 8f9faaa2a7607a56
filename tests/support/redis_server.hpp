#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "process.hpp"

namespace rlp_test {

// Runs the commands in order on one fresh blocking connection to 127.0.0.1:port (test side
// only) and returns the last reply flattened to text: integers as digits, nil as "(nil)",
// arrays joined by '\n'.
std::string redis_commands(std::uint16_t port, const std::vector<std::vector<std::string>>& cmds);

// A real redis-server on a free loopback port, no persistence, gone with the object.
class redis_server {
  public:
    redis_server();
    ~redis_server();

    std::uint16_t port() const { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

    // Runs one command over a fresh blocking connection (test side only) and returns the
    // reply flattened to text: integers as digits, nil as "(nil)", arrays joined by '\n'.
    std::string command(const std::vector<std::string>& args) const;

    void kill_hard();  // SIGKILL
    void pause();      // SIGSTOP: accepts connections, never answers
    void resume();     // SIGCONT
    void restart();    // start again on the same port (after kill_hard)
    child_process& process() { return *process_; }

  private:
    void start();
    std::uint16_t port_;
    std::string dir_;
    std::unique_ptr<child_process> process_;
};

}  // namespace rlp_test
