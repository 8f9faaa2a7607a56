#include "worker.hpp"

#include "session.hpp"

namespace ratelimit_proxy::server {

namespace {
redis::connection_options redis_options(const proxy_context& ctx) {
    redis::connection_options o;
    o.where = ctx.redis_endpoint;
    o.command_timeout = ctx.settings.redis.command_timeout;
    o.connect_timeout = ctx.settings.redis.connect_timeout;
    // Reconnect at least as often as the breaker probes, so every worker hands decisions
    // back to Redis within about a second of its return.
    o.reconnect_max = std::max<std::chrono::milliseconds>(
        o.reconnect_min, ctx.settings.redis.breaker_probe_interval);
    return o;
}

proxy::upstream_endpoint upstream_endpoint(const proxy_context& ctx) {
    return {ctx.upstream.host, ctx.upstream.port, ctx.upstream.tls};
}

constexpr std::size_t max_spare_buffers = 64;
constexpr std::size_t max_spare_header_capacity = 16 * 1024;

std::unique_ptr<limit::limiter> make_limiter(const proxy_context& ctx, redis::connection& redis,
                                             redis::circuit_breaker& breaker) {
    if (ctx.settings.store == "memory")
        return std::make_unique<limit::memory_limiter>(*ctx.memory);
    return std::make_unique<limit::redis_limiter>(redis, ctx.policies, ctx.settle, breaker,
                                                  *ctx.fallback,
                                                  ctx.settings.rate_limit.fallback_instances,
                                                  ctx.settings.rate_limit.fail_closed);
}
}  // namespace

worker::worker(const proxy_context& ctx, unsigned index,
               std::shared_ptr<const limit::rule_set> rules)
    : ctx_(ctx),
      index_(index),
      metrics_(ctx.settings.metrics.per_client_top_n),
      limiter_(make_limiter(ctx, redis_, breaker_)),
      leases_(*limiter_, index, ctx.settings.rate_limit.concurrency_lease),
      io_(1),
      renew_timer_(io_),
      redis_(io_, redis_options(ctx)),
      breaker_(ctx.settings.redis.breaker_failures, ctx.settings.redis.breaker_probe_interval),
      tokens_(redis_, breaker_, *ctx.known, ctx.settings.redis.key_prefix,
              ctx.settings.auth.token_cache_ttl, ctx.settings.auth.token_cache_size),
      pool_(io_, ctx.tls.get(), upstream_endpoint(ctx), ctx.settings.upstream.connect_timeout,
            ctx.settings.upstream.max_idle_connections, ctx.settings.upstream.pool_idle_timeout),
      admission_{ctx.settings,     tokens_,   *limiter_, denials_, redis_, rules_,
                 register_policy_, *ctx.load, index,     metrics_, leases_} {
    set_rules(std::move(rules));
}

void worker::set_rules(std::shared_ptr<const limit::rule_set> rules) {
    const bool first = !rules_;
    rules_ = std::move(rules);
    register_policy_ = registration_policy(*rules_);
    // A limit, a tier or a bucket may have changed: what was known to be over its limit
    // may not be any more.
    denials_.clear();
    if (!first)
        tokens_.expire_cache();
}

worker::~worker() {
    leases_.release_all();
}

std::unique_ptr<char[]> worker::take_buffer() {
    if (spare_buffers_.empty())
        return std::make_unique<char[]>(body_buffer_size);
    auto b = std::move(spare_buffers_.back());
    spare_buffers_.pop_back();
    return b;
}

void worker::return_buffer(std::unique_ptr<char[]> buffer) {
    if (buffer && spare_buffers_.size() < max_spare_buffers)
        spare_buffers_.push_back(std::move(buffer));
}

boost::beast::flat_buffer worker::take_header_buffer() {
    if (spare_header_buffers_.empty())
        return {};
    auto b = std::move(spare_header_buffers_.back());
    spare_header_buffers_.pop_back();
    return b;
}

void worker::return_header_buffer(boost::beast::flat_buffer&& buffer) {
    // Moved from, the caller's buffer is left empty; one that grew (a large header, pipelined
    // requests) is freed rather than kept.
    auto b = std::move(buffer);
    b.clear();
    if (b.capacity() > 0 && b.capacity() <= max_spare_header_capacity &&
        spare_header_buffers_.size() < max_spare_buffers)
        spare_header_buffers_.push_back(std::move(b));
}

std::unique_ptr<exchange_state> worker::take_exchange() {
    if (spare_exchanges_.empty())
        return std::make_unique<exchange_state>();
    auto e = std::move(spare_exchanges_.back());
    spare_exchanges_.pop_back();
    return e;
}

void worker::return_exchange(std::unique_ptr<exchange_state> e) {
    if (!e)
        return;
    e->response_parser.reset();
    if (spare_exchanges_.size() < max_spare_buffers)
        spare_exchanges_.push_back(std::move(e));
}

void worker::add(session* s) {
    sessions_.insert(s);
    session_count_.fetch_add(1, std::memory_order_relaxed);
}

void worker::remove(session* s) {
    sessions_.erase(s);
    session_count_.fetch_sub(1, std::memory_order_relaxed);
}

void worker::drain() {
    // drain() may close a session, which removes it from the set: iterate over a copy.
    std::vector<session*> current(sessions_.begin(), sessions_.end());
    for (auto* s : current)
        s->drain();
}

void worker::start(std::function<void()> on_connected) {
    redis_.on_connected([this, on_connected = std::move(on_connected)] {
        // Redis may have restarted with an empty script cache: load ahead of the first
        // request instead of paying a NOSCRIPT round trip on it.
        // Its reply doubles as the breaker's probe: a bare TCP connect to a Redis that does
        // not answer (SIGSTOP) proves nothing.
        const std::string_view load[] = {"SCRIPT", "LOAD", ctx_.policies.source()};
        redis_.command(load, [this](redis::outcome o, redis::reply&& r) {
            if (o == redis::outcome::ok && r.type != redis::reply_type::error)
                breaker_.record_success();
        });
        const std::string_view load_settle[] = {"SCRIPT", "LOAD", ctx_.settle.source()};
        redis_.command(load_settle, [](redis::outcome, redis::reply&&) {});
        if (on_connected)
            on_connected();
    });
    redis_.start();
    schedule_renewal();
}

void worker::schedule_renewal() {
    renew_timer_.expires_after(leases_.renew_interval());
    renew_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec)
            return;  // stopped
        leases_.renew_all();
        schedule_renewal();
    });
}

void worker::stop() {
    renew_timer_.cancel();
    pool_.clear();
    redis_.stop();
}

}  // namespace ratelimit_proxy::server
