#include "daemon/notify/mail.hpp"

#include <cstring>
#include <curl/curl.h>
#include <fstream>
#include <stdexcept>

#include "daemon/crypto/primitives.hpp"

namespace privacyd::notify {

namespace fs = std::filesystem;

namespace {

bool header_safe(std::string_view s) { return s.find_first_of("\r\n") == std::string_view::npos; }

std::string crlf(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) out += '\r';
    out += text[i];
  }
  return out;
}

// RFC 2047 for a header that is not ASCII (a Chinese subject line).
std::string encoded_word(std::string_view text) {
  bool ascii = true;
  for (char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) return std::string(text);
  return "=?UTF-8?B?" + crypto::base64_encode(text) + "?=";
}

// Base64 in lines of 76 characters, for a MIME part.
std::string base64_lines(std::string_view data) {
  std::string out;
  for (std::size_t i = 0; i < data.size(); i += 57) out += crypto::base64_encode(data.substr(i, 57)) + "\r\n";
  return out;
}

}  // namespace

std::optional<std::string> compose(const Mail& m) {
  if (!header_safe(m.to) || !header_safe(m.from) || !header_safe(m.subject) || !header_safe(m.id) ||
      !header_safe(m.locale)) {
    return std::nullopt;
  }
  std::string out = "To: <" + m.to + ">\r\nFrom: <" + m.from + ">\r\nSubject: " + encoded_word(m.subject) +
                    "\r\nMessage-ID: <" + m.id + "@privacyd>\r\nMIME-Version: 1.0\r\n";
  if (!m.attachment_json) {
    out += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nContent-Language: " +
           m.locale + "\r\n\r\n" + crlf(m.body);
    return out;
  }
  // The boundary is random, so no body can contain it by chance.
  const std::string boundary = "=_privacyd_" + crypto::hex(crypto::random_bytes(12));
  out += "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n";
  out += "--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n" +
         "Content-Language: " + m.locale + "\r\n\r\n" + crlf(m.body) + "\r\n";
  out += "--" + boundary +
         "\r\nContent-Type: application/json; charset=utf-8; name=\"notice.json\"\r\n"
         "Content-Disposition: attachment; filename=\"notice.json\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
         base64_lines(*m.attachment_json);
  out += "--" + boundary + "--\r\n";
  return out;
}

Delivery send_smtp(const SmtpSettings& smtp, const Mail& mail) {
  struct Reader {
    std::string data;
    std::size_t offset = 0;
  } reader;
  auto message = compose(mail);
  if (!message) return {false, false, "unsafe header", {}};
  // SMTP's end of data is a line with one dot; libcurl escapes leading dots.
  reader.data = std::move(*message);
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return {false, true, "curl_easy_init failed", {}};
  curl_slist* rcpt = curl_slist_append(nullptr, ("<" + mail.to + ">").c_str());
  curl_easy_setopt(curl, CURLOPT_URL, smtp.url.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, ("<" + mail.from + ">").c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
  if (!smtp.user.empty()) {
    // Credentials never travel in clear: without STARTTLS the attempt
    // fails before AUTH (CURLUSESSL_ALL), and is retried on the schedule.
    curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
    curl_easy_setopt(curl, CURLOPT_USERNAME, smtp.user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, smtp.password.c_str());
  } else {
    curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));  // STARTTLS when offered
  }
  if (!smtp.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, smtp.ca_file.c_str());
  curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(smtp.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_READDATA, &reader);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, +[](char* buffer, size_t size, size_t n, void* user) -> size_t {
    auto* r = static_cast<Reader*>(user);
    size_t take = std::min(size * n, r->data.size() - r->offset);
    std::memcpy(buffer, r->data.data() + r->offset, take);
    r->offset += take;
    return take;
  });
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(curl);
  if (rc == CURLE_OK) return {true, false, {}, {}};
  std::string error = std::string("smtp: ") + curl_easy_strerror(rc) + (code ? " (" + std::to_string(code) + ")" : "");
  if (rc == CURLE_USE_SSL_FAILED) error += ": the relay offers no STARTTLS, so the credentials were not sent";
  // 5xx from the mail server is permanent; the rest (4xx, network, TLS)
  // retries. A refused login (530, 535) is the relay's configuration, not
  // the mail's: it retries, or one wrong password would kill every notice.
  // 530 authentication required, 534 mechanism too weak, 535 credentials
  // invalid, 538 encryption required for the mechanism.
  const bool login = rc == CURLE_LOGIN_DENIED || code == 530 || code == 534 || code == 535 || code == 538;
  if (login) {
    error += ": the relay refused the credentials (notices.smtp_user, notices.smtp_password_file)";
    return {false, true, error, {}, true};
  }
  const bool permanent = code >= 500 && code < 600;
  return {false, !permanent, error, {}};
}

Delivery write_eml(const fs::path& dir, const Mail& mail) {
  auto message = compose(mail);
  if (!message) return {false, false, "unsafe header", {}};
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto tmp = dir / (mail.id + ".eml.tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << *message;
    if (!out) return {false, true, "cannot write the notice file", {}};
  }
  fs::rename(tmp, dir / (mail.id + ".eml"), ec);
  if (ec) return {false, true, "cannot write the notice file", {}};
  return {true, false, {}, {}};
}

std::string read_secret_line(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.filename().string());
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (line.empty()) throw std::runtime_error(file.filename().string() + " is empty");
  return line;
}

}  // namespace privacyd::notify
