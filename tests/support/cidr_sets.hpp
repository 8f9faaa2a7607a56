#pragma once

#include <initializer_list>

#include "ratelimit_proxy/common/cidr.hpp"

namespace rlp_test {

// A set of these networks; a malformed one throws, as cidr_set::add does.
inline ratelimit_proxy::common::cidr_set cidr_set_of(std::initializer_list<const char*> cidrs) {
    ratelimit_proxy::common::cidr_set s;
    for (const char* c : cidrs)
        s.add(c);
    return s;
}

}  // namespace rlp_test
