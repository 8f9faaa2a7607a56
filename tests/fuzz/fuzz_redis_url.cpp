// libFuzzer target: redis::parse_url on arbitrary bytes. Only std::invalid_argument may escape
// (its documented error); anything else, or a parsed endpoint that breaks the invariants
// below, is a crash. ASan/UBSan catch memory errors and undefined behaviour on the way.
#include "ratelimit_proxy/redis/connection.hpp"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view url(reinterpret_cast<const char*>(data), size);
    ratelimit_proxy::redis::endpoint ep;
    try {
        ep = ratelimit_proxy::redis::parse_url(url);
    } catch (const std::invalid_argument&) {
        return 0;
    } catch (...) {
        __builtin_trap();  // an exception type parse_url does not promise
    }
    // A parsed URL names somewhere to connect to.
    if (ep.host.empty() || ep.port == 0 || ep.db < 0)
        __builtin_trap();
    return 0;
}
