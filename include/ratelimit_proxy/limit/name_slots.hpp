#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace ratelimit_proxy::limit {

// Small integers for policy and tier names, the same for a name for the life of the process:
// per-worker metric arrays are indexed by them, so a counter keeps counting when the rules
// are rebuilt. Slot 0 stands for "no policy" / "no tier"; the last is "other", shared by
// the names that came once the others were taken. Taken when a rule set is built, never per
// request.
class name_slots {
  public:
    explicit name_slots(std::size_t capacity) : capacity_(capacity) {}

    std::uint16_t slot(std::string_view name);
    // Indexed by slot; [0] is empty, and the last is "other" once names overflowed into it.
    std::vector<std::string> names() const;
    std::size_t capacity() const { return capacity_; }

  private:
    std::size_t capacity_;
    mutable std::mutex mutex_;
    std::map<std::string, std::uint16_t, std::less<>> slots_;
    std::vector<std::string> names_{std::string()};
};

inline constexpr std::size_t max_policy_slots = 128;
inline constexpr std::size_t max_tier_slots = 16;

name_slots& policy_slots();  // capacity max_policy_slots
name_slots& tier_slots();    // capacity max_tier_slots

}  // namespace ratelimit_proxy::limit
