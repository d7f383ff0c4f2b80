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

// Gives the file its mode (whatever the umask) and its whole content, on disk.
void fill(int fd, std::string_view content, mode_t mode) {
  if (::fchmod(fd, mode) != 0) throw std::system_error(errno, std::generic_category(), "fchmod");
  for (std::size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(n < 0 ? errno : EIO, std::generic_category(), "write");
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) throw std::system_error(errno, std::generic_category(), "fsync");
}

// The file is made without a name (O_TMPFILE) and given its name only when
// whole: a crash before the link leaves nothing behind, not even a hidden
// copy of the key. -1 when the file system cannot do it.
int linked_without_a_name(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  const auto dir = path.parent_path();
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) return -1;
    fail(errno, "cannot create a file in", dir);
  }
  try {
    fill(fd, content, mode);
  } catch (const std::system_error& e) {
    ::close(fd);
    fail(e.code().value(), "cannot write", path);
  }
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  const bool linked = ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0;
  const int error = errno;
  ::close(fd);
  if (linked) return 1;
  if (error == EEXIST) return 0;  // another writer got there first: theirs stands
  if (error == ENOENT) return -1;  // no /proc: write aside instead
  fail(error, "cannot create", path);
}

// Without O_TMPFILE: written under a hidden name beside the target and
// hard-linked into place.
bool linked_from_aside(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  const auto dir = path.parent_path();
  std::string temp = (dir / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = ::mkostemp(temp.data(), O_CLOEXEC);  // created 0600, O_EXCL
  if (fd < 0) fail(errno, "cannot create a file in", dir);
  try {
    fill(fd, content, mode);
    if (::close(fd) != 0) {
      fd = -1;
      throw std::system_error(errno, std::generic_category(), "close");
    }
  } catch (const std::system_error& e) {
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    fail(e.code().value(), "cannot write", path);
  }
  const bool linked = ::link(temp.c_str(), path.c_str()) == 0;
  const int error = errno;
  ::unlink(temp.c_str());
  if (!linked && error != EEXIST) fail(error, "cannot create", path);
  return linked;
}

}  // namespace

bool create_file_once(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) return false;
  int made = linked_without_a_name(path, content, mode);
  const bool created = made < 0 ? linked_from_aside(path, content, mode) : made == 1;
  if (created) sync_directory(path.parent_path());
  return created;
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
