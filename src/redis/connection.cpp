#include "ratelimit_proxy/redis/connection.hpp"

#include <utility>

#include "connection_impl.hpp"

namespace ratelimit_proxy::redis {

namespace asio = boost::asio;

connection::impl::impl(asio::io_context& io, connection_options options)
    : io_(io),
      options_(std::move(options)),
      command_timer_(io),
      connect_timer_(io),
      reconnect_timer_(io),
      resolver_(io),
      rng_(std::random_device{}()) {}

connection::impl::~impl() {
    stopped_ = true;
    if (link_)
        drop_link(*link_, "connection destroyed");
}

connection::connection(asio::io_context& io, connection_options options)
    : impl_(std::make_shared<impl>(io, std::move(options))) {}

connection::~connection() {
    // Pending handlers run now, inline: the io_context may never run again.
    auto keep = impl_;
    keep->on_connected_ = nullptr;
    keep->stop();
}

void connection::start() {
    impl_->start();
}

void connection::stop() {
    // A handler called from stop() may destroy this connection.
    auto keep = impl_;
    keep->stop();
}

const connection::counters& connection::stats() const {
    return impl_->stats_;
}

bool connection::connected() const {
    return impl_->link_ && impl_->link_->usable();
}

void connection::on_connected(std::function<void()> callback) {
    impl_->on_connected_ = std::move(callback);
}

}  // namespace ratelimit_proxy::redis
