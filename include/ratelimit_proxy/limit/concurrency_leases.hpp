#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/limit/decision.hpp"
#include "ratelimit_proxy/limit/limiter.hpp"

namespace ratelimit_proxy::limit {

class concurrency_leases;

// The concurrency leases of one request (algorithm concurrency): taken by an allowed check,
// given back exactly once when the request ends. One per session, reused request after
// request (its strings keep their capacity).
class lease_hold {
  public:
    explicit lease_hold(concurrency_leases& owner) : owner_(owner) {}
    ~lease_hold() { end(); }
    lease_hold(const lease_hold&) = delete;
    lease_hold& operator=(const lease_hold&) = delete;

    // A fresh lease id for this request's check items (valid until the next call).
    std::string_view new_id();
    // After a check: holds the leases of the concurrency items it consumed from (all of
    // them when the request was allowed, none otherwise).
    void take(std::span<const check_item> items, const decision& d);
    // The request is over (last byte written, either side closed, a local answer after
    // all): the leases go back. Does nothing when none are held, so every ending may call it.
    void end();
    bool holding() const { return count_ > 0; }
    lease_refs refs() const { return {id_, {keys_.data(), count_}, local_}; }

  private:
    friend class concurrency_leases;
    concurrency_leases& owner_;
    std::string id_;
    std::vector<std::string> keys_;  // the first count_ are held
    std::size_t count_ = 0;
    bool local_ = false;
    std::size_t index_ = 0;  // in the owner's live list, while holding
};

// One worker's concurrency leases: lease ids, the requests holding leases now, and their
// renewal. A lease lives lease_time in the store unless renewed; renew_all() (a worker timer,
// every renew_interval() = lease_time / 3) extends each live one by that interval in one
// pipelined burst, so a long stream keeps its slot and a crashed instance's slots come back
// within the lease time. Not locked: one worker thread.
class concurrency_leases {
  public:
    // Lease ids are "<instance>:<worker>:<counter>" (hex), unique across a fleet, and across
    // restarts of one instance (the instance id is random per process).
    concurrency_leases(limiter& store, unsigned worker, std::chrono::milliseconds lease_time);

    std::chrono::milliseconds lease_time() const { return lease_time_; }
    std::chrono::milliseconds renew_interval() const { return lease_time_ / 3; }
    void renew_all();
    // Every lease back now, and none taken or renewed after (the worker is going away).
    void release_all();
    std::size_t holding() const { return live_.size(); }

  private:
    friend class lease_hold;
    void next_id(std::string& out);
    void hold(lease_hold& h);
    void drop(lease_hold& h);

    limiter& store_;
    std::string id_head_;  // "<instance>:<worker>:"
    std::uint64_t counter_ = 0;
    std::chrono::milliseconds lease_time_;
    std::vector<lease_hold*> live_;
    bool closed_ = false;
};

// This process's random instance id (16 hex digits), made once.
std::string_view instance_id();

}  // namespace ratelimit_proxy::limit
