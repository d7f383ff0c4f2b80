#pragma once
// POST /v1/webhooks/partner-center (SPEC §3): authenticate (Standard
// Webhooks), validate, seal the personal data, and commit — answering 202
// only after the commit. Repeats of a webhook-id answer what the first
// delivery was answered; a different body under the same id is 409.

#include <functional>
#include <memory>
#include <vector>

#include "daemon/base/clock.hpp"
#include "daemon/base/current.hpp"
#include "daemon/base/log.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/http/router.hpp"
#include "daemon/intake/directory.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/group_commit.hpp"
#include "daemon/store/key_store.hpp"

namespace privacyd::intake {

struct IntakeOptions {
  Duration tolerance = std::chrono::seconds(300);
  std::uint64_t max_body = 64 * 1024;
  metrics::Metrics* metrics = nullptr;  // rejections by reason, requests received by type
  // Where subjects' keys come from (SPEC §14); null: the master key seals.
  SubjectKeyStore* subject_keys = nullptr;
};

class Intake {
 public:
  Intake(GroupCommit& commits, const crypto::KeyRing& keys, const Directory& directory, const Clock& clock,
         Logger& log, IntakeOptions options, std::vector<crypto::Bytes> secrets);

  void mount(http::Router& router);
  boost::asio::awaitable<http::Response> handle(http::Request& request);

  // Rotation: the new set takes effect for the next webhook.
  void set_secrets(std::vector<crypto::Bytes> secrets);
  // Called after each newly stored request commits (main wires the engine's
  // wake-up here, so intake never reaches into the engine).
  void on_request_stored(std::function<void()> callback) { on_request_stored_ = std::move(callback); }

 private:
  GroupCommit& commits_;
  const crypto::KeyRing& keys_;
  const Directory& directory_;
  const Clock& clock_;
  Logger& log_;
  OutageLog commit_outage_{"webhooks not committed: the database is unavailable"};
  IntakeOptions options_;
  Current<std::vector<crypto::Bytes>> secrets_;
  std::function<void()> on_request_stored_;

  // An error answer, counted by its code (a fixed set: never a value).
  http::Response refuse(int status, std::string_view code, std::string_view message, std::string_view field = {});
};

}  // namespace privacyd::intake
