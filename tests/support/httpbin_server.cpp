#include "httpbin_server.hpp"

#include <stdexcept>

namespace rlp_test {

httpbin_server::httpbin_server() : port_(free_port()), dir_(temp_dir()) {
    start(nullptr);
}

httpbin_server::httpbin_server(const tls_files& tls) : port_(free_port()), dir_(temp_dir()) {
    start(&tls);
}

httpbin_server::~httpbin_server() = default;

std::string httpbin_server::url(const std::string& path) const {
    return (tls_ ? "https://localhost:" : "http://127.0.0.1:") + std::to_string(port_) + path;
}

void httpbin_server::start(const tls_files* tls) {
    std::vector<std::string> argv{"/usr/bin/gunicorn",
                                  "-b",
                                  "127.0.0.1:" + std::to_string(port_),
                                  "-w",
                                  "2",
                                  "--graceful-timeout",
                                  "1",
                                  "--timeout",
                                  "30",
                                  "--chdir",
                                  dir_,
                                  "--preload"};
    if (tls) {
        tls_ = true;
        argv.insert(argv.end(), {"--certfile", tls->cert_file, "--keyfile", tls->key_file});
    }
    argv.push_back("httpbin:app");
    process_ = std::make_unique<child_process>(
        argv, std::vector<std::pair<std::string, std::string>>{{"PYTHONDONTWRITEBYTECODE", "1"}},
        dir_ + "/gunicorn.log");
    if (!wait_for_port(port_, std::chrono::seconds(20)))
        throw std::runtime_error("gunicorn/httpbin did not start on port " + std::to_string(port_) +
                                 ": " + process_->read_log());
}

}  // namespace rlp_test
