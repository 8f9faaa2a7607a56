#include "proxy_fixture.hpp"

#include <utility>

namespace rlp_test {

template <class Upstream>
void proxy_fixture<Upstream>::start_proxy(proxy_setup setup) {
    const bool with_token = setup.register_token;
    proxy.reset();
    proxy = std::make_unique<proxy_process>(proxy_options_for(std::move(setup)));
    if (with_token)
        token = register_token(proxy->port());
}

template <class Upstream>
proxy_options proxy_fixture<Upstream>::proxy_options_for(proxy_setup setup) const {
    return {.target_url = setup.target_url.empty() ? upstream.url(setup.base_path)
                                                   : std::move(setup.target_url),
            .redis_url = redis.url(),
            .env = std::move(setup.env),
            .config = std::move(setup.config),
            .args = std::move(setup.args),
            .wait_redis_ready = setup.wait_redis_ready};
}

template class proxy_fixture<beast_upstream>;
template class proxy_fixture<httpbin_server>;
template class proxy_fixture<mock_llm_upstream>;

}  // namespace rlp_test
