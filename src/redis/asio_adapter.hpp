#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>

struct redisAsyncContext;

namespace ratelimit_proxy::redis {

// Drives one hiredis 0.14 async context from an io_context: hiredis asks for read and write
// interest through its ev hooks, and each becomes a wait on the context's socket; when the
// socket is ready, hiredis reads or writes. hiredis ships no Asio adapter of its own.
// Wait handlers hold the adapter strongly, so it outlives the context; alive() says whether
// context() may still be touched.
class asio_adapter : public std::enable_shared_from_this<asio_adapter> {
  public:
    // What the adapter tells the connection that owns the context. Held weakly, and kept alive
    // while hiredis runs, because hiredis's callbacks may destroy the connection.
    class owner {
      public:
        // Once per socket write that hiredis is about to make.
        virtual void on_write() = 0;
        // hiredis is freeing the context, after it answered every pending reply callback.
        virtual void on_closed(asio_adapter& adapter) = 0;

      protected:
        ~owner() = default;
    };

    asio_adapter(boost::asio::io_context& io, std::weak_ptr<owner> owner, redisAsyncContext* ac);

    // Installs the ev hooks: from here on hiredis drives the waits.
    void attach();

    redisAsyncContext* context() const { return ac_; }
    bool alive() const { return alive_; }

  private:
    void wait_readable();
    void wait_writable();
    void on_ready(const boost::system::error_code& ec, bool read);

    static void add_read(void* p);
    static void del_read(void* p);
    static void add_write(void* p);
    static void del_write(void* p);
    static void cleanup(void* p);

    std::weak_ptr<owner> owner_;
    redisAsyncContext* ac_;
    boost::asio::posix::stream_descriptor fd_;
    bool alive_ = true;
    bool want_read_ = false;
    bool want_write_ = false;
    bool read_waiting_ = false;
    bool write_waiting_ = false;
};

}  // namespace ratelimit_proxy::redis
