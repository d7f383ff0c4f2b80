#include "daemon/base/files.hpp"

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace privacyd {
namespace {

[[noreturn]] void fail(int error, const std::string& what, const std::filesystem::path& path) {
  throw std::system_error(error, std::generic_category(), what + " " + path.string());
}

// Flushes a folder's entries, so a link made in it outlives a power cut.
void sync_directory(const std::filesystem::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: the file itself is already on disk
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

bool create_file_once(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) return false;
  const auto dir = path.parent_path();
  std::string temp = (dir / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = ::mkostemp(temp.data(), O_CLOEXEC);  // created 0600, O_EXCL
  if (fd < 0) fail(errno, "cannot create a file in", dir);
  auto discard = [&](int error, const char* what) {
    ::close(fd);
    ::unlink(temp.c_str());
    fail(error, what, path);
  };
  if (::fchmod(fd, mode) != 0) discard(errno, "cannot set the mode of");
  for (std::size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) discard(n < 0 ? errno : EIO, "cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) discard(errno, "cannot flush");
  if (::close(fd) != 0) {
    ::unlink(temp.c_str());
    fail(errno, "cannot write", path);
  }
  const bool linked = ::link(temp.c_str(), path.c_str()) == 0;
  const int error = errno;
  ::unlink(temp.c_str());
  if (!linked) {
    if (error == EEXIST) return false;  // another writer got there first: theirs stands
    fail(error, "cannot create", path);
  }
  sync_directory(dir);
  return true;
}

void create_directories(const std::filesystem::path& dir, mode_t mode) {
  if (dir.empty()) return;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) fail(ENOTDIR, "not a folder:", dir);
    return;
  }
  if (dir.has_parent_path() && dir.parent_path() != dir) create_directories(dir.parent_path(), mode);
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) fail(errno, "cannot create the folder", dir);
}

}  // namespace privacyd
