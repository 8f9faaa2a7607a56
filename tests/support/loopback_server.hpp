#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>

namespace rlp_test {

// A TCP listener on 127.0.0.1 (a free port) that serves each connection synchronously on a
// thread of its own: what the in-process test upstreams (beast_upstream, mock_llm_upstream)
// are built on. stop() shuts every open connection down, so no handler outlives it.
class loopback_server {
  public:
    using handler = std::function<void(int fd)>;

    loopback_server();  // listening; start() begins accepting
    ~loopback_server();
    loopback_server(const loopback_server&) = delete;
    loopback_server& operator=(const loopback_server&) = delete;

    // Accepts connections (TCP_NODELAY) and runs serve(fd) for each on its own thread.
    void start(handler serve);
    void stop();

    std::uint16_t port() const { return port_; }
    // "http://127.0.0.1:PORT" + base_path
    std::string url(std::string_view base_path) const;
    std::size_t connection_count() const { return connection_count_.load(); }

    // A handler calls this just before closing its connection: stop() leaves the fd alone.
    void forget(int fd);
    bool stopping() const { return stopping_.load(); }
    const std::atomic<bool>& stopping_flag() const { return stopping_; }
    // Waits d; true when stop() came first.
    bool sleep_or_stop(std::chrono::milliseconds d);

  private:
    void accept_loop();

    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    handler serve_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> connection_count_{0};
    std::thread acceptor_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::set<int> open_fds_;
    std::list<std::thread> workers_;
};

}  // namespace rlp_test
