#include "listener.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "session.hpp"
#include "worker.hpp"

namespace ratelimit_proxy::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

listener::listener(asio::io_context& io, const tcp::endpoint& endpoint,
                   std::vector<worker*> workers, std::size_t max_connections)
    : io_(io), acceptor_(io), workers_(std::move(workers)), max_connections_(max_connections) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
}

tcp::endpoint listener::local_endpoint() const {
    return acceptor_.local_endpoint();
}

void listener::run() {
    do_accept();
}

void listener::stop() {
    asio::post(io_, [self = shared_from_this()] {
        boost::system::error_code ec;
        self->acceptor_.close(ec);
    });
}

void listener::close_now() {
    boost::system::error_code ec;
    acceptor_.close(ec);
}

void listener::do_accept() {
    auto& target = *workers_[next_];
    next_ = (next_ + 1) % workers_.size();
    acceptor_.async_accept(target.io(), [self = shared_from_this(), &target](
                                            boost::system::error_code ec, socket_type socket) {
        self->on_accept(ec, std::move(socket), target);
    });
}

void listener::on_accept(boost::system::error_code ec, socket_type socket, worker& target) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open())
        return;
    if (ec) {
        spdlog::warn("accept failed: {}", ec.message());
        // Out of descriptors and the like: back off a little instead of spinning.
        auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
        timer->async_wait(
            [self = shared_from_this(), timer](boost::system::error_code) { self->do_accept(); });
        return;
    }
    std::size_t open = 0;
    for (auto* w : workers_)
        open += w->session_count();
    if (open >= max_connections_) {
        // Refuse quickly rather than run out of descriptors.
        spdlog::warn("connection limit {} reached; refusing a connection", max_connections_);
        socket.close(ec);
    } else {
        // The socket is bound to the target worker's io_context: start it on that thread.
        asio::post(target.io(), [&target, s = std::move(socket)]() mutable {
            std::make_shared<session>(std::move(s), target)->run();
        });
    }
    do_accept();
}

}  // namespace ratelimit_proxy::server
