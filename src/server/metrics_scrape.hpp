#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/metrics/cells.hpp"

namespace ratelimit_proxy::server {

class worker;

// What the control thread counts: configuration reloads (SIGHUP).
struct process_metrics {
    metrics::counter_cell reloads_ok;
    metrics::counter_cell reloads_failed;
    metrics::gauge_cell last_reload_success;  // unix seconds; the start-up load counts
};

// GET /metrics: every worker's cells summed, the rules in force as gauges, the process's own.
// Runs on the control thread; reads the workers' cells without stopping them.
std::string scrape_metrics(const std::vector<std::unique_ptr<worker>>& workers,
                           const limit::rule_set& rules, const process_metrics& process);

}  // namespace ratelimit_proxy::server
