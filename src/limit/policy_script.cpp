#include "ratelimit_proxy/limit/policy_script.hpp"

namespace ratelimit_proxy::limit::policy_script {

// The algorithm field of one item in lua/policies.lua's ARGV.
std::string_view algorithm_code(algorithm a) {
    switch (a) {
        case algorithm::token_bucket:
            return "tb";
        case algorithm::gcra:
            return "gcra";
        case algorithm::sliding_window:
            return "sw";
        case algorithm::fixed_window:
            return "fw";
        case algorithm::concurrency:
            return "cc";
    }
    return "tb";
}

}  // namespace ratelimit_proxy::limit::policy_script
