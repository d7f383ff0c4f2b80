#pragma once
// The Partner Center hears back (SPEC §13.1): when a request completes, is
// rejected or has its deadline extended, a signed callback goes out from
// the outbox (channel partner_center), committed in the same transaction
// as the change it reports. Ids only: no personal data.

#include <optional>
#include <string>
#include <vector>

#include "daemon/engine/action.hpp"
#include "daemon/notify/notice_actions.hpp"
#include "daemon/store/runs.hpp"

namespace privacyd::notify {

// An access package's download link (SPEC §13.2).
struct PackageLink {
  std::string url;         // {public_url}/v1/packages/{token}
  std::string expires_at;  // RFC 3339
};

// The link from an export.package step's output (its sealed token), or
// nullopt when the output has none or the token cannot be opened.
std::optional<PackageLink> package_link(const NoticeDependencies& deps, const boost::json::value& export_output);

// `event` is request.completed, request.rejected or request.extended; `row`
// is the request as it is after the change (its deadline, for an
// extension). Empty when no partner_center.callback_url is configured.
std::vector<engine::NoticeDraft> partner_center_callbacks(const NoticeDependencies& deps, const runs::RunRow& row,
                                                          std::string_view event, const std::string& reason,
                                                          UnixMillis now);

}  // namespace privacyd::notify
