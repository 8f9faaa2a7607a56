#pragma once

#include <chrono>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "ratelimit_proxy/limit/decision.hpp"

namespace ratelimit_proxy::limit {

// Bucket keys known to be over their limit, each until the moment its policy said to retry.
// A denied request consumes nothing and no one can refill a bucket early, so answering such a
// request here gives what the store would have said, without asking it: a client hammering
// past its limit costs no Redis call. The owner clears it when the rules change (and an admin
// bucket reset changes the rules version too). One per worker thread; not locked.
class deny_cache {
  public:
    using clock = std::chrono::steady_clock;

    explicit deny_cache(std::size_t max_entries = 100000) : max_entries_(max_entries) {}

    // A denial the store decided for these items at `scale` (the factor limits were
    // multiplied by): every enforced item that denied is remembered until its retry time.
    void remember(std::span<const check_item> items, const decision& d, double scale,
                  clock::time_point now);

    // True, with the decision in `out`, when an enforced item's key is known to be over its
    // limit at this scale.
    bool lookup(std::span<const check_item> items, double scale, clock::time_point now,
                decision& out) const;

    void clear() { entries_.clear(); }
    std::size_t size() const { return entries_.size(); }

  private:
    struct entry {
        clock::time_point stored;
        clock::time_point until;
        double scale = 1;
        std::vector<policy_result> results;  // the whole decision, for the headers
        std::size_t denying = 0;             // the result this key denied in
    };
    void make_room(clock::time_point now);

    std::size_t max_entries_;
    std::unordered_map<std::string, entry> entries_;
};

}  // namespace ratelimit_proxy::limit
