// The connection's pipeline: commands formatted as RESP into one reused buffer and queued in
// hiredis (all those of one loop turn leave in one write), replies matched to their handlers in
// order, and per-command timeouts on one timer.
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <utility>

#include "connection_impl.hpp"

namespace ratelimit_proxy::redis {

namespace asio = boost::asio;

namespace {

reply copy_reply(const redisReply& r) {
    reply out;
    switch (r.type) {
        case REDIS_REPLY_STRING:
            out.type = reply_type::string;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = reply_type::status;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_ERROR:
            out.type = reply_type::error;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_INTEGER:
            out.type = reply_type::integer;
            out.integer = r.integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.type = reply_type::array;
            out.elements.reserve(r.elements);
            for (std::size_t i = 0; i < r.elements; ++i)
                out.elements.push_back(copy_reply(*r.element[i]));
            break;
        default:
            out.type = reply_type::nil;
            break;
    }
    return out;
}

}  // namespace

// Beside impl::command so the call inlines (one per Redis command).
void connection::command(std::span<const std::string_view> args, reply_handler handler) {
    impl_->command(args, std::move(handler));
}

void connection::impl::command(std::span<const std::string_view> args, reply_handler handler) {
    if (args.empty()) {
        reply r;
        r.type = reply_type::error;
        r.str = "ERR empty command";
        asio::post(io_, [h = std::move(handler), r = std::move(r)]() mutable {
            h(outcome::ok, std::move(r));
        });
        return;
    }
    if (!link_ || !link_->usable() ||
        !send(*link_, args, handler, steady::now() + options_.command_timeout)) {
        stats_.disconnected.add();
        asio::post(io_, [h = std::move(handler)] { h(outcome::disconnected, reply{}); });
    }
}

// Moves the handler out only when the command was queued.
bool connection::impl::send(link& l, std::span<const std::string_view> args, reply_handler& handler,
                            steady::time_point deadline) {
    // RESP written here into a reused buffer: hiredis' own formatting (sdscatfmt per
    // argument) allocated twice and formatted slowly on every request.
    command_text_.clear();
    append_resp_length('*', args.size());
    for (auto a : args) {
        append_resp_length('$', a.size());
        command_text_.append(a).append("\r\n");
    }
    std::uint64_t seq = next_seq_++;
    // Replies come in command order, so the sequence number only checks that invariant.
    if (redisAsyncFormattedCommand(l.context(), &impl::on_reply,
                                   reinterpret_cast<void*>(static_cast<std::uintptr_t>(seq)),
                                   command_text_.data(), command_text_.size()) != REDIS_OK)
        return false;
    // The deadline was taken from the clock just now: no second clock read per command.
    const auto sent = deadline == no_deadline ? steady::now() : deadline - options_.command_timeout;
    pending_.push_back({seq, std::move(handler), deadline, sent});
    stats_.commands.add();
    ++unwritten_commands_;
    if (deadline != no_deadline)
        arm_command_timer(deadline);
    return true;
}

void connection::impl::on_write() {
    stats_.writes.add();
    // A write of nothing new finishes a partial one: its commands are counted already.
    if (unwritten_commands_ > 0)
        stats_.commands_per_write.observe(static_cast<double>(unwritten_commands_));
    unwritten_commands_ = 0;
}

void connection::impl::on_reply(redisAsyncContext* ac, void* r, void* privdata) {
    static_cast<impl*>(ac->data)->handle_reply(
        static_cast<const redisReply*>(r),
        static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(privdata)));
}

void connection::impl::handle_reply(const redisReply* r, std::uint64_t seq) {
    if (pending_.empty() || pending_.front().seq != seq) {
        spdlog::error("redis {}: reply for an unknown command dropped", where());
        return;
    }
    auto handler = std::move(pending_.front().handler);
    const auto sent = pending_.front().sent;
    pending_.pop_front();
    // A null reply means hiredis is tearing the context down.
    if (!r && link_)
        link_->closing_ = true;
    if (!handler) {
        --expired_;  // timed out before: the late reply is dropped
        return;
    }
    if (r) {
        stats_.command_seconds.observe(std::chrono::duration<double>(steady::now() - sent).count());
        if (r->type == REDIS_REPLY_ERROR)
            stats_.error_replies.add();
        handler(outcome::ok, copy_reply(*r));
    } else {
        stats_.disconnected.add();
        handler(outcome::disconnected, reply{});
    }
}

// One timer per connection. Deadlines grow with issue order, so pending_ is sorted by
// deadline and the timer only needs to wake for the oldest command not yet expired.
void connection::impl::arm_command_timer(steady::time_point at) {
    if (command_timer_armed_ && command_timer_.expiry() <= at)
        return;
    command_timer_armed_ = true;
    command_timer_.expires_at(at);
    command_timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
        auto self = w.lock();
        if (ec || !self)
            return;
        // A re-arm to an earlier time raced with this expiry: the newer wait is due.
        if (self->command_timer_.expiry() > steady::now())
            return;
        self->command_timer_armed_ = false;
        self->expire_commands();
    });
}

void connection::impl::expire_commands() {
    auto now = steady::now();
    boost::container::small_vector<reply_handler, 8> expired;
    while (expired_ < pending_.size() && pending_[expired_].deadline <= now) {
        expired.push_back(std::move(pending_[expired_].handler));
        pending_[expired_].handler = nullptr;
        ++expired_;
    }
    // No reply at all for connect_timeout past a deadline: the server hangs or the
    // connection is half-open, so start over on a fresh one.
    if (expired_ > 0 && link_ && link_->usable() &&
        now - pending_.front().deadline >= options_.connect_timeout)
        drop_link(*link_, "no reply within " +
                              std::to_string(
                                  (options_.command_timeout + options_.connect_timeout).count()) +
                              " ms");
    auto next = no_deadline;
    if (expired_ < pending_.size())
        next = pending_[expired_].deadline;
    if (expired_ > 0 && link_ && link_->usable())
        next = std::min(next, pending_.front().deadline + options_.connect_timeout);
    if (next != no_deadline)
        arm_command_timer(next);
    // Last: handlers may issue commands or destroy the connection.
    for (auto& h : expired) {
        stats_.timeouts.add();
        h(outcome::timeout, reply{});
    }
}

void connection::impl::fail_all_pending() {
    auto left = std::move(pending_);
    pending_.clear();
    expired_ = 0;
    for (auto& p : left)
        if (p.handler) {
            stats_.disconnected.add();
            asio::post(io_, [h = std::move(p.handler)] { h(outcome::disconnected, reply{}); });
        }
}

void connection::impl::append_resp_length(char kind, std::size_t n) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
    command_text_.push_back(kind);
    command_text_.append(digits, end).append("\r\n");
}

}  // namespace ratelimit_proxy::redis
