#include "asio_adapter.hpp"

#include <hiredis/async.h>

#include <boost/asio/error.hpp>

namespace ratelimit_proxy::redis {

namespace asio = boost::asio;

asio_adapter::asio_adapter(asio::io_context& io, std::weak_ptr<owner> owner, redisAsyncContext* ac)
    : owner_(std::move(owner)), ac_(ac), fd_(io, ac->c.fd) {}

void asio_adapter::attach() {
    ac_->ev.data = this;
    ac_->ev.addRead = &add_read;
    ac_->ev.delRead = &del_read;
    ac_->ev.addWrite = &add_write;
    ac_->ev.delWrite = &del_write;
    ac_->ev.cleanup = &cleanup;
}

void asio_adapter::wait_readable() {
    if (read_waiting_ || !alive_)
        return;
    read_waiting_ = true;
    fd_.async_wait(asio::posix::descriptor_base::wait_read,
                   [self = shared_from_this()](const boost::system::error_code& ec) {
                       self->on_ready(ec, true);
                   });
}

void asio_adapter::wait_writable() {
    if (write_waiting_ || !alive_)
        return;
    write_waiting_ = true;
    fd_.async_wait(asio::posix::descriptor_base::wait_write,
                   [self = shared_from_this()](const boost::system::error_code& ec) {
                       self->on_ready(ec, false);
                   });
}

void asio_adapter::on_ready(const boost::system::error_code& ec, bool read) {
    (read ? read_waiting_ : write_waiting_) = false;
    bool& wanted = read ? want_read_ : want_write_;
    if (ec == asio::error::operation_aborted || !alive_ || !wanted)
        return;
    // Callbacks below may destroy the connection; keep its owner alive until we return.
    auto owner = owner_.lock();
    if (!owner)
        return;
    // Other errors are left for hiredis to discover on the socket itself.
    if (read) {
        redisAsyncHandleRead(ac_);
    } else {
        owner->on_write();
        redisAsyncHandleWrite(ac_);
    }
    // The context may be gone now; hiredis re-adds interest it still has.
    if (alive_ && wanted)
        read ? wait_readable() : wait_writable();
}

void asio_adapter::add_read(void* p) {
    auto* a = static_cast<asio_adapter*>(p);
    a->want_read_ = true;
    a->wait_readable();
}

void asio_adapter::del_read(void* p) {
    static_cast<asio_adapter*>(p)->want_read_ = false;
}

void asio_adapter::add_write(void* p) {
    auto* a = static_cast<asio_adapter*>(p);
    a->want_write_ = true;
    a->wait_writable();
}

void asio_adapter::del_write(void* p) {
    static_cast<asio_adapter*>(p)->want_write_ = false;
}

// Called by hiredis while freeing the context, after every pending reply callback.
void asio_adapter::cleanup(void* p) {
    auto* a = static_cast<asio_adapter*>(p);
    a->alive_ = false;
    a->want_read_ = a->want_write_ = false;
    // redisAsyncFree closes the fd right after this hook: only deregister it from Asio.
    a->fd_.release();
    if (auto owner = a->owner_.lock())
        owner->on_closed(*a);
}

}  // namespace ratelimit_proxy::redis
