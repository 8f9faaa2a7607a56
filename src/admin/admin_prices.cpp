// The admin API's prices: USD per million tokens per model, the config file's "pricing" with
// the overlay's "pricing" member on top (model -> price, or null for one of the file's that
// was deleted). A change is an overlay update, so it reaches every instance like a policy.
#include <nlohmann/json.hpp>

#include "admin_api.hpp"
#include "api_reply.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"

namespace ratelimit_proxy::admin {

using json = nlohmann::json;
using detail::defined_by_admin;
using detail::member_object;
using detail::not_found;
using detail::remove_member;
using detail::reply;

namespace {

const char* const section = "pricing";

const metering::price* exact_entry(const limit::rule_set& rules, const std::string& model) {
    const auto& e = rules.pricing().entries();
    auto it = e.find(model);
    return it == e.end() ? nullptr : &it->second;
}

json price_out(const std::string& model, const metering::price& p, const json& overlay) {
    json j = config::price_to_json(p);
    j["model"] = model;
    j["source"] = defined_by_admin(overlay, section, model) ? "admin" : "config";
    return j;
}

json table_out(const limit::rule_set& rules) {
    return {{"prices", config::pricing_to_json(rules.pricing())}, {"version", rules.version()}};
}

void check_model(const std::string& model) {
    if (!config::is_valid_model_pattern(model))
        throw api_error(400, error_body("invalid",
                                        "a model is 1 to 128 characters without control "
                                        "characters, '*' only at the end (a prefix)",
                                        "model"));
}

}  // namespace

admin_api::response admin_api::list_prices(request&) {
    co_return reply(200, table_out(*rules_.current()));
}

admin_api::response admin_api::get_price(request& r) {
    const std::string& model = r.name;
    auto snap = rules_.snapshot();
    const auto* p = exact_entry(*snap.rules, model);
    if (!p)
        co_return reply(404, not_found("price for model", model, "model"));
    co_return reply(200, price_out(model, *p, *snap.overlay));
}

admin_api::response admin_api::put_price(request& r) {
    const std::string& model = r.name;
    check_model(model);
    r.read_json_body();
    json body = r.body;
    body.erase("model");  // what GET answers may be sent back as it is
    body.erase("source");
    // Named as the overlay names it: "pricing.<model>.<field>".
    config::price_from_json(body, std::string(section) + "." + model);
    const bool existed = exact_entry(*rules_.current(), model) != nullptr;
    const control_plane::mutation m = [model, body](json& overlay, const limit::rule_set&) {
        member_object(overlay, section)[model] = body;
    };
    const describer describe = [model](const update_result& u) {
        return price_out(model, *exact_entry(*u.rules, model), *u.overlay);
    };
    auto answered = co_await change(m, describe, existed ? 200 : 201);
    co_return answered;
}

admin_api::response admin_api::delete_price(request& r) {
    const std::string& model = r.name;
    const bool in_file = exact_entry(*rules_.file_rules(), model) != nullptr;
    const control_plane::mutation m = [model, in_file](json& overlay,
                                                       const limit::rule_set& before) {
        if (!exact_entry(before, model))
            throw api_error(404, not_found("price for model", model, "model"));
        remove_member(overlay, section, model, in_file);
    };
    const describer describe = [model](const update_result&) { return json{{"deleted", model}}; };
    auto answered = co_await change(m, describe);
    co_return answered;
}

admin_api::response admin_api::put_prices(request& r) {
    r.read_json_body();
    r.only_fields({"prices"});
    auto it = r.body.find("prices");
    if (it == r.body.end())
        co_return reply(
            400,
            error_body("invalid", "give the whole table: {\"prices\": {model: price}}", "prices"));
    // Validated as a whole before anything changes; fields named "pricing.<model>.<field>".
    const json table = *it;
    config::pricing_from_json(table, section);
    const auto file = rules_.file_rules();
    const control_plane::mutation m = [table, file](json& overlay, const limit::rule_set&) {
        json replaced = table;
        // The file's entries that the new table leaves out are deleted, not kept.
        for (const auto& [model, price] : file->pricing().entries())
            if (!replaced.contains(model))
                replaced[model] = nullptr;
        overlay[section] = std::move(replaced);
    };
    const describer describe = [](const update_result& u) { return table_out(*u.rules); };
    auto answered = co_await change(m, describe);
    co_return answered;
}

}  // namespace ratelimit_proxy::admin
