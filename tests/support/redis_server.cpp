#include "redis_server.hpp"

#include <hiredis/hiredis.h>
#include <signal.h>

#include <stdexcept>

namespace rlp_test {

redis_server::redis_server() : port_(free_port()), dir_(temp_dir()) {
    start();
}

redis_server::~redis_server() = default;

void redis_server::start() {
    process_ = std::make_unique<child_process>(
        std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind",
                                 "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir_},
        std::vector<std::pair<std::string, std::string>>{}, dir_ + "/redis.log");
    if (!wait_for_port(port_, std::chrono::seconds(10)))
        throw std::runtime_error("redis-server did not start on port " + std::to_string(port_));
}

namespace {
std::string flatten(const redisReply* r) {
    switch (r->type) {
        case REDIS_REPLY_INTEGER:
            return std::to_string(r->integer);
        case REDIS_REPLY_NIL:
            return "(nil)";
        case REDIS_REPLY_ARRAY: {
            std::string out;
            for (size_t i = 0; i < r->elements; ++i) {
                if (i)
                    out += '\n';
                out += flatten(r->element[i]);
            }
            return out;
        }
        default:
            return std::string(r->str, r->len);
    }
}
}  // namespace

std::string redis_commands(std::uint16_t port, const std::vector<std::vector<std::string>>& cmds) {
    timeval tv{5, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        throw std::runtime_error("cannot connect to test redis");
    }
    std::string out;
    for (const auto& args : cmds) {
        std::vector<const char*> argv;
        std::vector<size_t> lens;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        auto* r = static_cast<redisReply*>(
            redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
        if (!r) {
            redisFree(c);
            throw std::runtime_error("test redis command failed");
        }
        out = flatten(r);
        freeReplyObject(r);
    }
    redisFree(c);
    return out;
}

std::string redis_server::command(const std::vector<std::string>& args) const {
    return redis_commands(port_, {args});
}

void redis_server::kill_hard() {
    process_->send_signal(SIGKILL);
    process_->wait_exit(std::chrono::seconds(5));
}

void redis_server::pause() {
    process_->send_signal(SIGSTOP);
}
void redis_server::resume() {
    process_->send_signal(SIGCONT);
}

void redis_server::restart() {
    process_.reset();
    start();
}

}  // namespace rlp_test
