#include "socket_swarm.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <stdexcept>
#include <thread>

namespace rlp_test {

namespace {

using steady = std::chrono::steady_clock;

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    return addr;
}

// Non-blocking connect; the fd when it completed within timeout, else -1.
int connect_nonblocking(std::uint16_t port, std::chrono::milliseconds timeout) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    auto addr = loopback(port);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (rc != 0 && errno != EINPROGRESS) {
        ::close(fd);
        return -1;
    }
    if (rc != 0) {
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) {
            ::close(fd);
            return -1;
        }
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            ::close(fd);
            return -1;
        }
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

}  // namespace

connection_swarm::connection_swarm(std::uint16_t port) : port_(port) {}

connection_swarm::~connection_swarm() {
    close_all(true);
}

std::size_t connection_swarm::open(std::size_t n, std::chrono::milliseconds timeout) {
    std::size_t opened = 0;
    members_.reserve(members_.size() + n);
    for (std::size_t i = 0; i < n; ++i) {
        int fd = connect_nonblocking(port_, timeout);
        if (fd < 0)
            break;
        member m;
        m.fd = fd;
        m.opened = steady::now();
        members_.push_back(std::move(m));
        ++opened;
    }
    return opened;
}

bool connection_swarm::send(std::size_t i, std::string_view data,
                            std::chrono::milliseconds timeout) {
    auto& m = members_.at(i);
    auto deadline = steady::now() + timeout;
    while (!data.empty()) {
        if (m.closed || m.fd < 0)
            return false;
        ssize_t n = ::send(m.fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            m.sent += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
            if (left.count() <= 0)
                return false;
            pollfd p{m.fd, POLLOUT, 0};
            ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 50)));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        // EPIPE, ECONNRESET: the peer is gone. Read what it sent before going.
        read_from(m);
        if (!m.closed) {
            m.closed = true;
            m.reset = errno == ECONNRESET;
            m.closed_at = steady::now();
        }
        return false;
    }
    return true;
}

void connection_swarm::read_from(member& m) {
    char buf[16 * 1024];
    for (;;) {
        ssize_t n = ::recv(m.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            m.received.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) {
            m.closed = true;
            m.closed_at = steady::now();
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        m.closed = true;
        m.reset = errno == ECONNRESET;
        m.closed_at = steady::now();
        return;
    }
}

void connection_swarm::pump(std::chrono::milliseconds d) {
    auto deadline = steady::now() + d;
    std::vector<pollfd> fds;
    std::vector<std::size_t> index;
    do {
        fds.clear();
        index.clear();
        for (std::size_t i = 0; i < members_.size(); ++i) {
            if (members_[i].closed || members_[i].fd < 0)
                continue;
            fds.push_back(pollfd{members_[i].fd, POLLIN, 0});
            index.push_back(i);
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
        int wait = static_cast<int>(std::max<long long>(0, std::min<long long>(left.count(), 20)));
        if (fds.empty()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(wait));
            continue;
        }
        int r = ::poll(fds.data(), fds.size(), wait);
        if (r <= 0)
            continue;
        for (std::size_t k = 0; k < fds.size(); ++k)
            if (fds[k].revents)
                read_from(members_[index[k]]);
    } while (steady::now() < deadline);
}

bool connection_swarm::pump_until(const std::function<bool()>& pred,
                                  std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    while (!pred()) {
        if (steady::now() >= deadline)
            return false;
        pump(std::chrono::milliseconds(10));
    }
    return true;
}

std::size_t connection_swarm::closed_count() const {
    std::size_t n = 0;
    for (const auto& m : members_)
        n += m.closed ? 1 : 0;
    return n;
}

std::size_t connection_swarm::count_received(std::string_view needle) const {
    std::size_t n = 0;
    for (const auto& m : members_)
        n += m.received.find(needle) != std::string::npos ? 1 : 0;
    return n;
}

void connection_swarm::close(std::size_t i, bool abort) {
    auto& m = members_.at(i);
    if (m.fd < 0)
        return;
    if (abort) {
        linger lg{1, 0};
        ::setsockopt(m.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    ::close(m.fd);
    m.fd = -1;
    if (!m.closed) {
        m.closed = true;
        m.closed_at = steady::now();
    }
}

void connection_swarm::close_all(bool abort) {
    for (std::size_t i = 0; i < members_.size(); ++i)
        close(i, abort);
}

// ---- full_backlog_listener ------------------------------------------------------------------

full_backlog_listener::full_backlog_listener() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0)
        throw std::runtime_error("socket failed");
    auto addr = loopback(0);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 0) != 0) {
        ::close(listen_fd_);
        throw std::runtime_error("bind/listen failed");
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    // Nobody accepts: a backlog of 0 queues one connection; then a few more whose SYNs are
    // dropped keep the queue full. Each either completes at once or hangs; both are fine.
    for (int i = 0; i < 4; ++i) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        auto a = loopback(port_);
        ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        fillers_.push_back(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

full_backlog_listener::~full_backlog_listener() {
    for (int fd : fillers_)
        ::close(fd);
    ::close(listen_fd_);
}

bool full_backlog_listener::connect_hangs(std::chrono::milliseconds d) const {
    int fd = connect_nonblocking(port_, d);
    if (fd >= 0) {
        ::close(fd);
        return false;
    }
    return true;
}

// ---- descriptors ----------------------------------------------------------------------------

std::size_t raise_open_file_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return 0;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
        ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur == RLIM_INFINITY ? static_cast<std::size_t>(-1)
                                           : static_cast<std::size_t>(limit.rlim_cur);
}

long open_descriptor_count(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/fd";
    DIR* dir = ::opendir(path.c_str());
    if (!dir)
        return -1;
    long n = 0;
    while (auto* e = ::readdir(dir))
        if (e->d_name[0] != '.')
            ++n;
    ::closedir(dir);
    return n;
}

std::string describe_descriptors(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/fd";
    DIR* dir = ::opendir(path.c_str());
    if (!dir)
        return "(unreadable)";
    std::map<std::string, int> kinds;
    while (auto* e = ::readdir(dir)) {
        if (e->d_name[0] == '.')
            continue;
        char target[256];
        ssize_t n = ::readlink((path + "/" + e->d_name).c_str(), target, sizeof target - 1);
        std::string t = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
        auto bracket = t.find('[');
        if (bracket != std::string::npos)
            t = t.substr(0, bracket);  // "socket:", "anon_inode:", "pipe:"
        ++kinds[t];
    }
    ::closedir(dir);
    std::string out;
    for (auto& [k, v] : kinds)
        out += k + " x" + std::to_string(v) + "; ";
    return out;
}

}  // namespace rlp_test
