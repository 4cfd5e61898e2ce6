#include "service/engine/revision.h"

#include "absl/strings/str_cat.h"

namespace schemad::engine {

std::string Revision::Where() const {
  if (path.empty()) {
    return absl::StrCat("revision ", id);
  }
  return absl::StrCat(path, ":", id_line);
}

}  // namespace schemad::engine
