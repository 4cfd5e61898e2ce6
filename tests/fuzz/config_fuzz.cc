// Fuzzes the configuration loader (service/server/config.h): the input is
// the YAML text of a schemad configuration file. Files it names resolve
// against a scratch directory holding a tokens file, TLS files, DSN files and
// a migration directory (see MakeScratchDir); every environment variable is
// set to a DSN except UNSET_* (unset) and EMPTY_* (empty).
//
// Properties checked beyond "no crash, no undefined behaviour, no leak,
// no hang, no unbounded memory" (libFuzzer's -timeout and -rss_limit_mb):
//   - no error message holds a DSN's password (unless the input itself does);
//   - a loaded config has one DSN per database, no secret in the proto, and
//     the proto survives protobuf's own serialize/parse round trip (every
//     string valid UTF-8: names and labels reach clients over gRPC);
//   - an error is INVALID_ARGUMENT or NOT_FOUND.
//
// Thread-safety: libFuzzer calls it from one thread.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "schemad/v1/config.pb.h"
#include "service/server/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Passwords with URI-special characters, as base64 passwords have them.
constexpr absl::string_view kEnvPassword = "kq3/ENV+pw=@x";
constexpr absl::string_view kFilePassword = "Zr9/FILE+pw=@y";

void Write(const std::filesystem::path& file, absl::string_view content) {
  std::filesystem::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << content;
}

// The directory relative paths resolve against; removed at exit.
const std::string& ScratchDir() {
  static const std::string* dir = [] {
    char tmpl[] = "/tmp/schemad_config_fuzz_XXXXXX";
    FUZZ_CHECK(mkdtemp(tmpl) != nullptr);
    const std::filesystem::path root(tmpl);
    Write(root / "tokens.yaml", "tokens:\n  - {name: ci, token_sha256: abc, role: admin}\n");
    Write(root / "tls/server.pem", "-----BEGIN CERTIFICATE-----\n");
    Write(root / "tls/server.key", "-----BEGIN PRIVATE KEY-----\n");
    Write(root / "tls/ca.pem", "-----BEGIN CERTIFICATE-----\n");
    Write(root / "secrets/site-b",
          std::string("postgresql://modax:") + std::string(kFilePassword) + "@db-b/modax\n");
    Write(root / "secrets/empty", "  \n");
    Write(root / "migrations/modax/.keep", "");
    atexit([] { std::filesystem::remove_all(ScratchDir()); });
    return new std::string(root.string());
  }();
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view yaml(reinterpret_cast<const char*>(data), size);
  schemad::server::ConfigSources sources;
  sources.base_dir = ScratchDir();
  sources.getenv = [](const std::string& name) -> std::optional<std::string> {
    if (absl::StartsWith(name, "UNSET_")) {
      return std::nullopt;
    }
    if (absl::StartsWith(name, "EMPTY_")) {
      return "";
    }
    return std::string("postgresql://modax:") + std::string(kEnvPassword) + "@db-a:5432/modax";
  };

  absl::StatusOr<schemad::server::LoadedConfig> loaded =
      schemad::server::ParseConfig(yaml, sources);
  if (!loaded.ok()) {
    const absl::StatusCode code = loaded.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound)
        << loaded.status();
    for (absl::string_view secret : {kEnvPassword, kFilePassword}) {
      FUZZ_CHECK(absl::StrContains(yaml, secret) ||
                 !absl::StrContains(loaded.status().message(), secret))
          << loaded.status();
    }
    return 0;
  }
  FUZZ_CHECK(static_cast<int>(loaded->dsns.size()) == loaded->proto.databases_size());
  const std::string wire = loaded->proto.SerializeAsString();
  for (absl::string_view secret : {kEnvPassword, kFilePassword}) {
    FUZZ_CHECK(absl::StrContains(yaml, secret) || !absl::StrContains(wire, secret));
  }
  schemad::v1::ServerConfig again;
  FUZZ_CHECK(again.ParseFromString(wire)) << "the loaded config does not survive protobuf's round "
                                             "trip (invalid UTF-8 in a string?)";
  return 0;
}
