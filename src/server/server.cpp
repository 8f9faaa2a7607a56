#include "ratelimit_proxy/server/server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <ctime>
#include <mutex>
#include <thread>

#include "listener.hpp"
#include "metrics_scrape.hpp"
#include "proxy_context.hpp"
#include "ratelimit_proxy/admin/control_plane.hpp"
#include "ratelimit_proxy/config/host_port.hpp"
#include "worker.hpp"

namespace ratelimit_proxy::server {

namespace asio = boost::asio;

struct server::impl {
    impl(const config::settings& s, unsigned threads, std::function<config::settings()> reload)
        : context(s, threads),
          reload_file(std::move(reload)),
          rules(control, s, [this](std::shared_ptr<const limit::rule_set> r) { publish(r); }),
          admin(control, s, rules) {}

    proxy_context context;
    std::function<config::settings()> reload_file;
    asio::io_context control{1};  // signals, the shutdown clock, rules and the admin API
    admin::control_plane rules;
    admin::admin_server admin;
    asio::steady_timer load_timer{control};
    std::vector<std::unique_ptr<worker>> workers;
    std::vector<std::thread> threads;
    std::mutex accept_mutex;  // the listener is set by the main thread, stopped by a signal
    std::shared_ptr<listener> accept;
    std::chrono::steady_clock::time_point drain_deadline;
    std::atomic<bool> stopping{false};
    process_metrics process;

    std::size_t open_sessions() const {
        std::size_t n = 0;
        for (const auto& w : workers)
            n += w->session_count();
        return n;
    }

    void wait_for_drain(const std::shared_ptr<asio::steady_timer>& timer) {
        if (open_sessions() == 0 || std::chrono::steady_clock::now() >= drain_deadline) {
            if (open_sessions() > 0)
                spdlog::warn("shutdown timeout: closing {} connection(s)", open_sessions());
            return stop_workers();
        }
        timer->expires_after(std::chrono::milliseconds(20));
        timer->async_wait([this, timer](boost::system::error_code) { wait_for_drain(timer); });
    }

    // On the control thread: every worker swaps the new rules in on its own thread.
    void publish(const std::shared_ptr<const limit::rule_set>& r) {
        for (auto& w : workers)
            asio::post(w->io(), [wp = w.get(), r] { wp->set_rules(r); });
    }

    void watch_load() {
        if (!context.load->enabled())
            return;
        load_timer.expires_after(std::chrono::seconds(1));
        load_timer.async_wait([this](boost::system::error_code ec) {
            if (ec)
                return;
            context.load->evaluate(std::chrono::steady_clock::now());
            watch_load();
        });
    }

    void wait_for_hangup(asio::signal_set& hangup) {
        hangup.async_wait([this, &hangup](boost::system::error_code ec, int) {
            if (ec)
                return;
            if (reload_file) {
                try {
                    rules.reload_file(reload_file());
                    process.reloads_ok.add();
                    process.last_reload_success.set(static_cast<double>(std::time(nullptr)));
                    spdlog::info(
                        "SIGHUP: configuration reloaded (policies, tiers, access lists, "
                        "registration; other settings need a restart)");
                } catch (const config::config_error& e) {
                    process.reloads_failed.add();
                    spdlog::error("SIGHUP: configuration not reloaded, the running one stays: {}",
                                  e.what());
                } catch (const std::exception& e) {
                    process.reloads_failed.add();
                    spdlog::error("SIGHUP: configuration not reloaded: {}", e.what());
                }
            }
            wait_for_hangup(hangup);
        });
    }

    void stop_workers() {
        rules.stop();
        admin.stop();
        load_timer.cancel();
        for (auto& w : workers) {
            asio::post(w->io(), [wp = w.get()] {
                wp->stop();
                wp->io().stop();
            });
        }
    }
};

server::server(const config::settings& settings, std::function<config::settings()> reload)
    : impl_(std::make_unique<impl>(settings, config::worker_threads(settings), std::move(reload))) {
}

server::~server() = default;

int server::run() {
    auto& s = impl_->context.settings;
    const unsigned threads = config::worker_threads(s);
    std::vector<worker*> raw;
    const auto initial_rules = impl_->rules.current();
    for (unsigned i = 0; i < threads; ++i) {
        impl_->workers.push_back(std::make_unique<worker>(impl_->context, i, initial_rules));
        raw.push_back(impl_->workers.back().get());
    }

    // Installed first so a signal during start-up also ends in a clean exit.
    asio::signal_set signals(impl_->control, SIGINT, SIGTERM);
    signals.async_wait([this](boost::system::error_code ec, int sig) {
        if (ec)
            return;
        spdlog::info("signal {}: no new connections; draining in-flight requests", sig);
        impl_->stopping = true;
        {
            std::lock_guard lock(impl_->accept_mutex);
            if (impl_->accept)
                impl_->accept->stop();
        }
        for (auto& w : impl_->workers)
            asio::post(w->io(), [wp = w.get()] { wp->drain(); });
        impl_->drain_deadline =
            std::chrono::steady_clock::now() + impl_->context.settings.server.shutdown_timeout;
        impl_->wait_for_drain(std::make_shared<asio::steady_timer>(impl_->control));
    });
    asio::signal_set hangup(impl_->control, SIGHUP);
    impl_->wait_for_hangup(hangup);
    auto control_guard = asio::make_work_guard(impl_->control);
    std::thread control_thread([this] { impl_->control.run(); });

    impl_->process.last_reload_success.set(static_cast<double>(std::time(nullptr)));
    impl_->admin.set_metrics(
        [this] { return scrape_metrics(impl_->workers, *impl_->rules.current(), impl_->process); });
    impl_->rules.set_runtime_stats([this] {
        std::uint64_t commands = 0, writes = 0;
        for (const auto& w : impl_->workers) {
            const auto& c = w->redis().stats();
            commands += c.commands.value();
            writes += c.writes.value();
        }
        return nlohmann::json{
            {"redis_commands", commands},
            {"redis_writes", writes},
            // Automatic pipelining at work: above 1 when checks share socket writes.
            {"redis_commands_per_write",
             writes ? static_cast<double>(commands) / static_cast<double>(writes) : 0.0},
            {"open_connections", impl_->open_sessions()},
            {"load_factor", impl_->context.load->factor()}};
    });

    // Posted, so they run on the control thread like everything else there.
    asio::post(impl_->control, [this] {
        impl_->rules.start();
        impl_->watch_load();
        try {
            impl_->admin.start();
        } catch (const std::exception& e) {
            spdlog::critical("admin API: {}", e.what());
        }
    });

    std::atomic<unsigned> connected{0};
    for (auto& w : impl_->workers) {
        asio::post(w->io(), [wp = w.get(), &connected] {
            wp->start([&connected, counted = false]() mutable {
                if (!counted)
                    connected.fetch_add(1);
                counted = true;
            });
        });
        impl_->threads.emplace_back([wp = w.get()] {
            auto guard = asio::make_work_guard(wp->io());
            wp->io().run();
        });
    }

    // Give Redis a moment before taking traffic, so the first /register after start-up does
    // not fail; if it stays away the proxy serves anyway and /ready says so.
    const auto wait_until = std::chrono::steady_clock::now() + s.redis.connect_timeout;
    while (connected.load() < threads && std::chrono::steady_clock::now() < wait_until &&
           !impl_->stopping.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (connected.load() < threads)
        spdlog::warn("Redis at {}:{} is not answering yet; serving anyway, /ready reports 503",
                     impl_->context.redis_endpoint.host, impl_->context.redis_endpoint.port);

    int code = 0;
    try {
        // A signal during start-up already began the drain: then there is nothing to open.
        std::lock_guard lock(impl_->accept_mutex);
        if (!impl_->stopping.load()) {
            impl_->accept = std::make_shared<listener>(raw.front()->io(),
                                                       config::listen_endpoint(s.server.listen),
                                                       raw, s.server.max_connections);
            asio::post(raw.front()->io(), [l = impl_->accept] { l->run(); });
            spdlog::info(
                "ratelimit-proxy {} listening on {} with {} thread(s); upstream {}://{}{}; "
                "{} polic(ies), store {}",
                RLP_VERSION, s.server.bind_address, threads,
                impl_->context.upstream.tls ? "https" : "http", impl_->context.upstream.host_header,
                impl_->context.upstream.base_path, initial_rules->policies().size(), s.store);
        }
    } catch (const std::exception& e) {
        spdlog::critical("cannot listen on {}: {}", s.server.bind_address, e.what());
        impl_->stop_workers();
        code = 1;
    }

    for (auto& t : impl_->threads)
        t.join();
    control_guard.reset();
    impl_->control.stop();
    control_thread.join();
    // Its acceptor belongs to worker 0's io_context: close it before that goes away.
    if (impl_->accept)
        impl_->accept->close_now();
    impl_->accept.reset();
    impl_->workers.clear();
    spdlog::info("stopped");
    return code;
}

}  // namespace ratelimit_proxy::server
