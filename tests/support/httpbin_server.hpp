#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "process.hpp"

namespace rlp_test {

// Debian's python3-httpbin under Debian's gunicorn (/usr/bin/gunicorn, never the python3 on
// PATH) on a free loopback port; optionally with TLS. Gone with the object.
class httpbin_server {
  public:
    struct tls_files {
        std::string cert_file;
        std::string key_file;
    };
    httpbin_server();
    explicit httpbin_server(const tls_files& tls);
    ~httpbin_server();

    std::uint16_t port() const { return port_; }
    // "http://127.0.0.1:PORT" (or https://localhost:PORT with TLS) + path
    std::string url(const std::string& path = "") const;
    std::string log() const { return process_->read_log(); }

  private:
    void start(const tls_files* tls);
    std::uint16_t port_;
    bool tls_ = false;
    std::string dir_;
    std::unique_ptr<child_process> process_;
};

}  // namespace rlp_test
