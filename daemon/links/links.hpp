#pragma once
// The public listener's part in closing the loops (SPEC §13): the person
// downloads their access package by the link in their mail, and partners
// acknowledge notices by a signed webhook or, when reached by email, by
// the link in theirs. Links are bearer tokens: only their SHA-256 is
// stored, and a client that keeps presenting unknown ones is slowed (429).

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "daemon/base/clock.hpp"
#include "daemon/base/log.hpp"
#include "daemon/config/config.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/http/message.hpp"
#include "daemon/http/router.hpp"
#include "daemon/policy/policy_store.hpp"
#include "daemon/store/database.hpp"

namespace privacyd::links {

// Counts unknown tokens per client address in fixed one-minute windows.
// Bounded: past `max_clients` addresses the oldest windows are dropped.
class GuessLimiter {
 public:
  explicit GuessLimiter(int allowed = 10, std::chrono::seconds window = std::chrono::seconds(60),
                        std::size_t max_clients = 10000)
      : allowed_(allowed), window_(window), max_clients_(max_clients) {}
  // How long `client` must wait, or zero when it may try.
  std::chrono::seconds wait(const std::string& client, Clock::time_point now);
  void missed(const std::string& client, Clock::time_point now);

 private:
  struct Window {
    Clock::time_point start;
    int misses = 0;
  };
  std::mutex mutex_;
  std::map<std::string, Window> clients_;
  int allowed_;
  std::chrono::seconds window_;
  std::size_t max_clients_;
};

struct Dependencies {
  Database& db;
  const policy::PolicyStore& policies;
  const crypto::KeyRing& keys;
  const Clock& clock;
  Logger& log;
  const Config& config;
};

class Links {
 public:
  explicit Links(const Dependencies& deps) : deps_(deps) {}
  void mount(http::Router& router);

  boost::asio::awaitable<http::Response> download(http::Request& request);
  boost::asio::awaitable<http::Response> partner_ack(http::Request& request);
  boost::asio::awaitable<http::Response> ack_page(http::Request& request);
  boost::asio::awaitable<http::Response> ack_by_link(http::Request& request);

 private:
  // A 429 when the client has guessed too often, else nullopt.
  std::optional<http::Response> slowed(const http::Request& request);
  void missed(const http::Request& request);

  Dependencies deps_;
  GuessLimiter guesses_;
};

// The client address of a request's `remote` ("ADDRESS:PORT").
std::string client_of(std::string_view remote);

}  // namespace privacyd::links
