#include "ratelimit_proxy/limit/name_slots.hpp"

namespace ratelimit_proxy::limit {

std::uint16_t name_slots::slot(std::string_view name) {
    std::lock_guard lock(mutex_);
    if (auto it = slots_.find(name); it != slots_.end())
        return it->second;
    const auto last = static_cast<std::uint16_t>(capacity_ - 1);
    if (names_.size() >= last) {
        names_.resize(capacity_);
        names_[last] = "other";
        return last;
    }
    const auto s = static_cast<std::uint16_t>(names_.size());
    names_.emplace_back(name);
    slots_.emplace(std::string(name), s);
    return s;
}

std::vector<std::string> name_slots::names() const {
    std::lock_guard lock(mutex_);
    return names_;
}

name_slots& policy_slots() {
    static name_slots slots(max_policy_slots);
    return slots;
}

name_slots& tier_slots() {
    static name_slots slots(max_tier_slots);
    return slots;
}

}  // namespace ratelimit_proxy::limit
