// A directory under /tmp for one test's files (configs, revisions, secrets),
// removed with everything in it when the TempDir goes.
//
//   TempDir dir;
//   dir.Write("modax/a1.sql", "-- revision: a1\n...");   // makes modax/
//   const std::string config = dir.Write("schemad.yaml", yaml);
#ifndef SCHEMAD_TESTS_TESTING_TEMP_DIR_H_
#define SCHEMAD_TESTS_TESTING_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace schemad::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/schemad_test_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

  // Writes `content` (bytes as they are) to `name` below the directory,
  // making its parent directories; owner-only, as schemad wants its secret
  // files (DSNs, tokens). Returns the file's path.
  std::string Write(const std::string& name, const std::string& content) const {
    const std::string file = path_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(file).parent_path());
    std::ofstream(file, std::ios::binary) << content;
    std::filesystem::permissions(
        file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return file;
  }

  // The content of `name` below the directory ("" when it cannot be read).
  std::string Read(const std::string& name) const {
    std::ifstream in(path_ + "/" + name, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

 private:
  std::string path_;
};

}  // namespace schemad::testing

#endif  // SCHEMAD_TESTS_TESTING_TEMP_DIR_H_
