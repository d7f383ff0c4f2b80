#pragma once
// Files written once and never over anything (keys, secrets, tokens): the
// content is written to a file without a name (O_TMPFILE; where the file
// system cannot, a hidden one beside the target), flushed, and then linked
// into place, which fails when the target exists. A crash on any line
// leaves either no file or the whole file, never a short one, and (with
// O_TMPFILE) no second copy under another name.

#include <filesystem>
#include <string_view>
#include <sys/types.h>

namespace privacyd {

// true: created with `mode`; false: `path` existed and is left as it was.
// Throws std::system_error (naming the path) when it cannot be written.
bool create_file_once(const std::filesystem::path& path, std::string_view content, mode_t mode = 0600);

// Creates `dir` and its missing parents with `mode` (existing ones are left
// as they are).
void create_directories(const std::filesystem::path& dir, mode_t mode = 0700);

}  // namespace privacyd
