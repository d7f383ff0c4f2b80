#pragma once
// Mail out of the outbox: subject notices and partner email notices, as
// RFC 5322 messages through SMTP (libcurl) or, in development, as .eml
// files. The Message-ID is the notice id on every attempt, so a mail sent
// again after a crash is recognisably the same mail (SPEC §13.3).

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "daemon/base/units.hpp"

namespace privacyd::notify {

struct Mail {
  std::string id;  // the notice's
  std::string to;
  std::string from;
  std::string subject;
  std::string body;  // plain text, LF line ends
  std::string locale;
  // A partner notice's JSON body (SPEC §7), attached as notice.json.
  std::optional<std::string> attachment_json;
};

// What one delivery attempt found. No personal data in `error`: status
// codes and transport errors only.
struct Delivery {
  bool delivered = false;
  bool retryable = true;
  std::string error;
  std::optional<Duration> retry_after;
  // The relay refused privacyd's own configuration (its login), not the
  // mail: the attempt is not counted against the notice's schedule.
  bool relay_misconfigured = false;
  // Not sent at all: a handed-over notice whose lease would have lapsed
  // before the attempt could end (the rounds send it instead).
  bool not_sent = false;
};

struct SmtpSettings {
  std::string url;  // smtp:// (STARTTLS when offered, required with credentials) or smtps://
  std::string user;
  std::string password;
  std::filesystem::path ca_file;
  Duration timeout = std::chrono::seconds(30);
};

// The message as sent: CRLF line ends, header fields checked for line
// breaks (a field that has one is refused, not folded). nullopt: refused.
std::optional<std::string> compose(const Mail& mail);

// Blocking (libcurl): run on a thread of its own.
Delivery send_smtp(const SmtpSettings& smtp, const Mail& mail);
// Writes DIR/ID.eml atomically (a temporary file renamed).
Delivery write_eml(const std::filesystem::path& dir, const Mail& mail);

// The first line of a password file, without its line end.
std::string read_secret_line(const std::filesystem::path& file);

}  // namespace privacyd::notify
