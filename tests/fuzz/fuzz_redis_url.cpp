// libFuzzer target: redis::parse_url on arbitrary bytes. Only std::invalid_argument may escape
// (its documented error); anything else, or a parsed endpoint that breaks the invariants
// below, is a crash. ASan/UBSan catch memory errors and undefined behaviour on the way.
#include "ratelimit_proxy/redis/endpoint.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string_view>
#include <typeinfo>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view url(reinterpret_cast<const char*>(data), size);
    ratelimit_proxy::redis::endpoint ep;
    try {
        ep = ratelimit_proxy::redis::parse_url(url);
    } catch (const std::invalid_argument&) {
        return 0;
    } catch (const std::exception& e) {
        // an exception type parse_url does not promise
        std::fprintf(stderr, "fuzz_redis_url: %s escaped parse_url: %s\n", typeid(e).name(),
                     e.what());
        __builtin_trap();
    } catch (...) {
        std::fprintf(stderr, "fuzz_redis_url: a non-std exception escaped parse_url\n");
        __builtin_trap();
    }
    // A parsed URL names somewhere to connect to.
    if (ep.host.empty() || ep.port == 0 || ep.db < 0) {
        std::fprintf(stderr, "fuzz_redis_url: parsed into host \"%s\", port %u, db %d\n",
                     ep.host.c_str(), unsigned(ep.port), ep.db);
        __builtin_trap();
    }
    return 0;
}
