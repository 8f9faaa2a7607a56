#include "proxy_process.hpp"

#include <signal.h>
#include <stdlib.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "ratelimit_proxy/config/settings_table.hpp"

namespace rlp_test {

namespace http = boost::beast::http;

void clear_proxy_environment() {
    for (const auto& row : ratelimit_proxy::config::settings_table())
        if (!row.variable.empty())
            ::unsetenv(std::string(row.variable).c_str());
}

std::string write_temp_file(const std::string& name, const std::string& text) {
    std::string path = temp_dir() + "/" + name;
    std::ofstream out(path);
    out << text;
    if (!out)
        throw std::runtime_error("cannot write " + path);
    return path;
}

proxy_process::proxy_process(proxy_options options)
    : port_(options.port ? options.port : free_port()), dir_(temp_dir()) {
    clear_proxy_environment();
    env_list env{{"BIND_ADDRESS", "127.0.0.1:" + std::to_string(port_)},
                 {"THREADS", "2"},
                 {"LOG_LEVEL", "info"}};
    if (!options.target_url.empty())
        env.emplace_back("TARGET_API_URL", options.target_url);
    if (!options.redis_url.empty())
        env.emplace_back("REDIS_URL", options.redis_url);
    env.insert(env.end(), options.env.begin(), options.env.end());

    std::vector<std::string> argv{RLP_PROXY_BINARY};
    if (options.config) {
        std::string path = dir_ + "/config.json";
        std::ofstream(path) << *options.config;
        argv.insert(argv.end(), {"--config", path});
    }
    argv.insert(argv.end(), options.args.begin(), options.args.end());
    process_ = std::make_unique<child_process>(argv, env, dir_ + "/proxy.log");
    if (options.wait_ready && !wait_healthy(std::chrono::seconds(15)))
        throw std::runtime_error("proxy did not become healthy on port " + std::to_string(port_) +
                                 "; log:\n" + log());
    if (options.wait_ready && options.wait_redis_ready &&
        !wait_redis_ready(std::chrono::seconds(10)))
        throw std::runtime_error("proxy did not become ready (GET /ready) on port " +
                                 std::to_string(port_) + "; log:\n" + log());
}

bool proxy_process::wait_redis_ready(std::chrono::milliseconds timeout, int consecutive) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int in_a_row = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        if (!process_->running())
            return false;
        unsigned status = 0;
        try {
            status = http_request(port_, http::verb::get, "/ready", {}, {},
                                  std::chrono::milliseconds(2000))
                         .status;
        } catch (const std::exception&) {
        }
        if (status == 200) {
            if (++in_a_row >= consecutive)
                return true;
            continue;
        }
        in_a_row = 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

proxy_process::~proxy_process() = default;

bool proxy_process::wait_healthy(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (!process_->running())
            return false;
        try {
            auto r = http_request(port_, http::verb::get, "/health", {}, {},
                                  std::chrono::milliseconds(1000));
            if (r.status == 200)
                return true;
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

namespace {
long proc_status_kb(pid_t pid, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ":", 0) == 0) {
            std::istringstream ss(line.substr(key.size() + 1));
            long kb = -1;
            ss >> kb;
            return kb;
        }
    }
    return -1;
}
}  // namespace

long proxy_process::vm_rss_kb() const {
    return proc_status_kb(process_->pid(), "VmRSS");
}
long proxy_process::vm_hwm_kb() const {
    return proc_status_kb(process_->pid(), "VmHWM");
}

exit_result run_proxy_to_exit(const std::vector<std::string>& args, const env_list& env,
                              std::chrono::milliseconds timeout) {
    clear_proxy_environment();
    std::vector<std::string> argv{RLP_PROXY_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string log = temp_dir() + "/proxy.log";
    exit_result result;
    {
        child_process p(argv, env, log);
        result.code = p.wait_exit(timeout);
        if (result.code == -1) {
            p.send_signal(SIGKILL);
            p.wait_exit(std::chrono::seconds(5));
        }
        result.output = p.read_log();
    }
    return result;
}

std::string register_token(std::uint16_t proxy_port) {
    auto r = http_request(proxy_port, http::verb::post, "/register");
    if (r.status != 201)
        throw std::runtime_error("POST /register answered " + std::to_string(r.status) + ": " +
                                 r.body);
    auto j = r.json();
    return j.at("token").get<std::string>();
}

header_list bearer(const std::string& token, header_list more) {
    more.emplace_back("Authorization", "Bearer " + token);
    return more;
}

}  // namespace rlp_test
