#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace rlp_test {

// Many raw TCP connections to 127.0.0.1:port driven by one thread with poll(2): for hostile
// clients (slowloris, connection floods) and for holding thousands of idle connections. Every
// call is bounded by its timeout; nothing blocks forever.
class connection_swarm {
  public:
    struct member {
        int fd = -1;
        std::string received;  // every byte read so far
        bool closed = false;   // the peer closed (EOF or reset), or the connect failed
        bool reset = false;    // ... with a reset
        std::chrono::steady_clock::time_point opened{};
        std::chrono::steady_clock::time_point closed_at{};
        std::size_t sent = 0;  // bytes written
    };

    explicit connection_swarm(std::uint16_t port);
    ~connection_swarm();
    connection_swarm(const connection_swarm&) = delete;
    connection_swarm& operator=(const connection_swarm&) = delete;

    // Opens n more connections, one after another, each connect bounded by timeout; stops at
    // the first failure. Returns how many were opened.
    std::size_t open(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(3));

    std::size_t size() const { return members_.size(); }
    member& operator[](std::size_t i) { return members_[i]; }
    const member& operator[](std::size_t i) const { return members_[i]; }

    // Writes all of data on connection i (waiting while the socket buffer is full, up to
    // timeout). False when the connection is closed or broke.
    bool send(std::size_t i, std::string_view data,
              std::chrono::milliseconds timeout = std::chrono::seconds(3));

    // Reads whatever arrives on every open connection for d, marking those the peer closed.
    void pump(std::chrono::milliseconds d);
    // Pumps until pred() holds or timeout passes; returns pred().
    bool pump_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

    std::size_t closed_count() const;
    std::size_t open_count() const { return size() - closed_count(); }
    // Connections whose received bytes contain needle.
    std::size_t count_received(std::string_view needle) const;

    // Closes connection i from this side (FIN; or RST when abort is true).
    void close(std::size_t i, bool abort = false);
    void close_all(bool abort = false);

  private:
    void read_from(member& m);
    std::uint16_t port_;
    std::vector<member> members_;
};

// A listener on a free loopback port whose accept queue is full and never drained: a new
// connection's SYN is dropped, so connecting to it hangs (a connect timeout without any
// non-loopback address).
class full_backlog_listener {
  public:
    full_backlog_listener();
    ~full_backlog_listener();
    full_backlog_listener(const full_backlog_listener&) = delete;
    full_backlog_listener& operator=(const full_backlog_listener&) = delete;
    std::uint16_t port() const { return port_; }
    // True when one more connect attempt indeed does not complete within d.
    bool connect_hangs(std::chrono::milliseconds d) const;

  private:
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::vector<int> fillers_;
};

// Raises this process's RLIMIT_NOFILE soft limit to the hard limit; returns the new soft limit.
std::size_t raise_open_file_limit();
// Entries in /proc/<pid>/fd (-1 when unreadable).
long open_descriptor_count(pid_t pid);
// A short description of /proc/<pid>/fd targets grouped by kind, for failure messages.
std::string describe_descriptors(pid_t pid);

}  // namespace rlp_test
