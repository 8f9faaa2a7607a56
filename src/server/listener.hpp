#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <memory>
#include <vector>

namespace ratelimit_proxy::server {

class worker;

// Accepts on one socket and hands each connection to the next worker, round robin; the
// connection then lives on that worker's thread.
class listener : public std::enable_shared_from_this<listener> {
  public:
    // Throws boost::system::system_error if the address cannot be bound.
    listener(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
             std::vector<worker*> workers, std::size_t max_connections);

    void run();
    void stop();
    // Only once no thread runs the io_context any more.
    void close_now();
    boost::asio::ip::tcp::endpoint local_endpoint() const;

  private:
    void do_accept();
    // Accepted straight onto the worker's io_context, typed by its concrete executor.
    using socket_type = boost::asio::basic_stream_socket<boost::asio::ip::tcp,
                                                         boost::asio::io_context::executor_type>;
    void on_accept(boost::system::error_code ec, socket_type socket, worker& target);

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::vector<worker*> workers_;
    std::size_t next_ = 0;
    std::size_t max_connections_;
};

}  // namespace ratelimit_proxy::server
