#pragma once
// Free text from outside (a partner's note, an operator's words) is kept
// only when it is something a person can read back: well-formed UTF-8, no
// control characters but line breaks and tabs. Anything else would break
// the JSON, the pages and the terminals it is shown in later.

#include <string_view>

namespace privacyd {

bool readable_text(std::string_view text);

}  // namespace privacyd
