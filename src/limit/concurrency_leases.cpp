#include "ratelimit_proxy/limit/concurrency_leases.hpp"

#include <charconv>
#include <random>

namespace ratelimit_proxy::limit {

std::string_view instance_id() {
    static const std::string id = [] {
        std::random_device rd;
        const std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
        char buf[17];
        auto [end, ec] = std::to_chars(buf, buf + 16, v, 16);
        std::string s(buf, end);
        s.insert(0, 16 - s.size(), '0');
        return s;
    }();
    return id;
}

concurrency_leases::concurrency_leases(limiter& store, unsigned worker,
                                       std::chrono::milliseconds lease_time)
    : store_(store), lease_time_(lease_time) {
    id_head_.assign(instance_id()).append(":").append(std::to_string(worker)).append(":");
}

void concurrency_leases::next_id(std::string& out) {
    out.assign(id_head_);
    char buf[17];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, ++counter_, 16);
    out.append(buf, end);
}

void concurrency_leases::hold(lease_hold& h) {
    h.index_ = live_.size();
    live_.push_back(&h);
}

void concurrency_leases::drop(lease_hold& h) {
    // Swap-remove: the order of renewal does not matter.
    live_[h.index_] = live_.back();
    live_[h.index_]->index_ = h.index_;
    live_.pop_back();
    if (!closed_)
        store_.release(h.refs());
}

void concurrency_leases::renew_all() {
    if (closed_)
        return;
    const auto by = std::chrono::duration_cast<std::chrono::microseconds>(renew_interval());
    for (const auto* h : live_)
        store_.renew(h->refs(), by);
}

void concurrency_leases::release_all() {
    for (auto* h : live_) {
        store_.release(h->refs());
        h->count_ = 0;
    }
    live_.clear();
    closed_ = true;
}

std::string_view lease_hold::new_id() {
    owner_.next_id(id_);
    return id_;
}

void lease_hold::take(std::span<const check_item> items, const decision& d) {
    end();  // a hold is for one request
    if (!d.allowed || d.store_unavailable || owner_.closed_ || d.results.size() != items.size())
        return;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (items[i].source->algo != algorithm::concurrency || !d.results[i].allowed)
            continue;
        if (count_ < keys_.size())
            keys_[count_].assign(items[i].key);
        else
            keys_.push_back(items[i].key);
        ++count_;
    }
    if (count_ == 0)
        return;
    local_ = d.decided_locally;
    owner_.hold(*this);
}

void lease_hold::end() {
    if (count_ == 0)
        return;
    owner_.drop(*this);
    count_ = 0;
}

}  // namespace ratelimit_proxy::limit
