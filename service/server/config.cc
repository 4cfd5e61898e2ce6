#include "service/server/config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/util/message_differencer.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/common/dsn.h"
#include "service/common/status_macros.h"
#include "service/common/version_table.h"
#include "service/engine/migration_set_config.h"
#include "service/engine/revision_file.h"
#include "service/server/proto_time.h"

namespace schemad::server {
namespace {

namespace pb = google::protobuf;

absl::Status KeyError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path.empty() ? "(top level)" : path, ": ", what));
}

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

const char* KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

absl::Status ExpectScalar(const YAML::Node& node, const std::string& path, absl::string_view what) {
  if (!node.IsScalar()) {
    return KeyError(path, absl::StrCat("expected ", what, ", got ", KindName(node)));
  }
  return absl::OkStatus();
}

// True when `text` is valid UTF-8 (RFC 3629: no overlong forms, surrogates
// or code points above U+10FFFF), as protobuf requires of a `string` field.
bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;  // the second byte's range
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      low = c == 0xE0 ? 0xA0 : 0x80;
      high = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      low = c == 0xF0 ? 0x90 : 0x80;
      high = c == 0xF4 ? 0x8F : 0xBF;
    } else {
      return false;
    }
    if (i + length > text.size()) {
      return false;
    }
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xBF)) {
        return false;
      }
    }
    i += length;
  }
  return true;
}

absl::Status SetScalar(const YAML::Node& node, const std::string& path, pb::Message* msg,
                       const pb::FieldDescriptor* field, bool repeated) {
  const pb::Reflection* r = msg->GetReflection();
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      RETURN_IF_ERROR(ExpectScalar(node, path, "a string"));
      // Names and labels reach clients in protobuf messages.
      if (!IsValidUtf8(node.Scalar())) {
        return KeyError(path, "not valid UTF-8");
      }
      repeated ? r->AddString(msg, field, node.Scalar()) : r->SetString(msg, field, node.Scalar());
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      RETURN_IF_ERROR(ExpectScalar(node, path, "true or false"));
      const std::string text = absl::AsciiStrToLower(node.Scalar());
      if (text != "true" && text != "false") {
        return KeyError(path, absl::StrCat("expected true or false, got \"", node.Scalar(), "\""));
      }
      repeated ? r->AddBool(msg, field, text == "true") : r->SetBool(msg, field, text == "true");
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      RETURN_IF_ERROR(ExpectScalar(node, path, "an integer"));
      int32_t value = 0;
      if (!absl::SimpleAtoi(node.Scalar(), &value)) {
        return KeyError(path, absl::StrCat("expected an integer, got \"", node.Scalar(), "\""));
      }
      repeated ? r->AddInt32(msg, field, value) : r->SetInt32(msg, field, value);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      RETURN_IF_ERROR(ExpectScalar(node, path, "a name"));
      const pb::EnumValueDescriptor* value = field->enum_type()->FindValueByName(node.Scalar());
      if (value == nullptr) {
        return KeyError(path, absl::StrCat("unknown value \"", node.Scalar(), "\""));
      }
      repeated ? r->AddEnum(msg, field, value) : r->SetEnum(msg, field, value);
      return absl::OkStatus();
    }
    default:
      break;
  }
  return KeyError(path, "unsupported field type in the schema");
}

absl::Status FromYaml(const YAML::Node& node, const std::string& path, pb::Message* msg);

absl::Status SetMessage(const YAML::Node& node, const std::string& path, pb::Message* msg) {
  if (msg->GetDescriptor() == pb::Duration::descriptor()) {
    RETURN_IF_ERROR(ExpectScalar(node, path, "a duration such as 30s"));
    absl::StatusOr<absl::Duration> d = ParseConfigDuration(node.Scalar());
    if (!d.ok()) {
      return KeyError(path, d.status().message());
    }
    ToProto(*d, static_cast<pb::Duration*>(msg));
    return absl::OkStatus();
  }
  return FromYaml(node, path, msg);
}

absl::Status SetField(const YAML::Node& node, const std::string& path, pb::Message* msg,
                      const pb::FieldDescriptor* field) {
  const pb::Reflection* r = msg->GetReflection();
  if (field->is_map()) {
    if (node.IsNull()) {
      return absl::OkStatus();
    }
    if (!node.IsMap()) {
      return KeyError(path, absl::StrCat("expected a mapping, got ", KindName(node)));
    }
    const pb::FieldDescriptor* key_field = field->message_type()->map_key();
    const pb::FieldDescriptor* value_field = field->message_type()->map_value();
    absl::flat_hash_set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      RETURN_IF_ERROR(ExpectScalar(it->first, path, "a string key"));
      const std::string key = it->first.Scalar();
      if (!IsValidUtf8(key)) {
        return KeyError(path, "a key is not valid UTF-8");
      }
      const std::string entry_path = Join(path, key);
      if (!seen.insert(key).second) {
        return KeyError(entry_path, "duplicate key");
      }
      pb::Message* entry = r->AddMessage(msg, field);
      entry->GetReflection()->SetString(entry, key_field, key);
      RETURN_IF_ERROR(SetScalar(it->second, entry_path, entry, value_field, false));
    }
    return absl::OkStatus();
  }
  if (field->is_repeated()) {
    if (node.IsNull()) {
      return absl::OkStatus();
    }
    if (!node.IsSequence()) {
      return KeyError(path, absl::StrCat("expected a list, got ", KindName(node)));
    }
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string item_path = absl::StrCat(path, "[", i, "]");
      if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        RETURN_IF_ERROR(SetMessage(node[i], item_path, r->AddMessage(msg, field)));
      } else {
        RETURN_IF_ERROR(SetScalar(node[i], item_path, msg, field, true));
      }
    }
    return absl::OkStatus();
  }
  if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
    return SetMessage(node, path, r->MutableMessage(msg, field));
  }
  return SetScalar(node, path, msg, field, false);
}

// Fills `msg` from a YAML mapping whose keys are field names.
absl::Status FromYaml(const YAML::Node& node, const std::string& path, pb::Message* msg) {
  if (node.IsNull()) {
    return absl::OkStatus();
  }
  if (!node.IsMap()) {
    return KeyError(path, absl::StrCat("expected a mapping, got ", KindName(node)));
  }
  const pb::Descriptor* descriptor = msg->GetDescriptor();
  absl::flat_hash_set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    RETURN_IF_ERROR(ExpectScalar(it->first, path, "a key"));
    const std::string key = it->first.Scalar();
    if (!IsValidUtf8(key)) {
      return KeyError(path, "a key is not valid UTF-8");
    }
    const std::string key_path = Join(path, key);
    if (!seen.insert(key).second) {
      return KeyError(key_path, "duplicate key");
    }
    const pb::FieldDescriptor* field = descriptor->FindFieldByName(key);
    if (field == nullptr) {
      return KeyError(key_path, "unknown key");
    }
    RETURN_IF_ERROR(SetField(it->second, key_path, msg, field));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ validation

bool IsName(absl::string_view name) {
  if (name.empty() || name.size() > 128) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

std::string Resolve(const std::string& base_dir, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_absolute()) {
    return p.lexically_normal().string();
  }
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

// Reads a whole file of at most kMaxConfigFileBytes; the error names
// `key_path` and the file, never its content. Only regular files (or
// symlinks to one): a device, FIFO or socket could be endless or block.
absl::StatusOr<std::string> ReadFile(const std::string& key_path, const std::string& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    return absl::NotFoundError(absl::StrCat(key_path, ": file ", file, " does not exist"));
  }
  if (std::filesystem::is_directory(file, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(key_path, ": ", file, " is a directory"));
  }
  if (!std::filesystem::is_regular_file(file, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(key_path, ": ", file, " is not a regular file"));
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, ": cannot read ", file, ": ", std::strerror(errno)));
  }
  std::string content;
  char buffer[1 << 14];
  while (in && content.size() <= kMaxConfigFileBytes) {
    in.read(buffer, sizeof(buffer));
    content.append(buffer, static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(key_path, ": cannot read ", file));
  }
  if (content.size() > kMaxConfigFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, ": ", file, " is larger than ", kMaxConfigFileBytes, " bytes"));
  }
  return content;
}

// Refuses a secret file that other users may read or anyone but its owner
// may write, unless `allow_insecure`; notes a group-readable one.
absl::Status CheckSecretFile(const std::string& key_path, const std::string& file,
                             bool allow_insecure, std::vector<std::string>* warnings) {
  struct stat info {};
  if (stat(file.c_str(), &info) != 0) {
    return absl::OkStatus();  // ReadFile says what is wrong
  }
  const unsigned mode = info.st_mode & 07777;
  const std::string mode_text = absl::StrFormat("%04o", mode);
  if ((mode & (S_IRWXO | S_IWGRP)) != 0) {
    const std::string what =
        absl::StrCat(file, " holds secrets but is ",
                     (mode & S_IROTH) != 0 ? "readable by other users" : "writable by others",
                     " (mode ", mode_text, ")");
    if (!allow_insecure) {
      return KeyError(key_path,
                      absl::StrCat(what,
                                   "; chmod 600 it (640 for a group that must read it), or "
                                   "set allow_insecure_secret_files: true"));
    }
    warnings->push_back(
        absl::StrCat(key_path, ": ", what, "; accepted (allow_insecure_secret_files)"));
  } else if ((mode & S_IRGRP) != 0) {
    warnings->push_back(
        absl::StrCat(key_path, ": ", file, " is readable by its group (mode ", mode_text, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(const std::string& path, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    return KeyError(path, absl::StrCat(value, " is out of range: ", low, " to ", high));
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(const std::string& path, const google::protobuf::Duration& value,
                           absl::Duration high) {
  const absl::Duration d = FromProto(value);
  if (d < absl::ZeroDuration() || d > high) {
    return KeyError(path, absl::StrCat(absl::FormatDuration(d), " is out of range: 0 to ",
                                       absl::FormatDuration(high)));
  }
  return absl::OkStatus();
}

absl::Status ValidateListen(const std::string& key, const std::string& listen) {
  if (listen.empty()) {
    return KeyError(key, "required (host:port, e.g. 127.0.0.1:50051)");
  }
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return KeyError(key, absl::StrCat("expected host:port, got \"", listen, "\""));
  }
  int port = 0;
  if (!absl::SimpleAtoi(absl::string_view(listen).substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return KeyError(key, absl::StrCat("bad port in \"", listen, "\""));
  }
  return absl::OkStatus();
}

absl::Status CheckExposure(const v1::ServerConfig& c, const std::string& key,
                           const std::string& listen) {
  const bool authenticated =
      !c.tokens_file().empty() || (c.has_tls() && c.tls().require_client_cert());
  if (authenticated || c.insecure_allow_unauthenticated() || IsLoopbackListen(listen)) {
    return absl::OkStatus();
  }
  return KeyError(key, absl::StrCat("refusing to serve ", listen,
                                    " without authentication: every caller on the network "
                                    "would be admin. Set tokens_file (or tls with "
                                    "require_client_cert), listen on 127.0.0.1, or set "
                                    "insecure_allow_unauthenticated: true"));
}

// Sets a Duration field to `value` unless the file set it.
#define SCHEMAD_DEFAULT_DURATION(msg, field, value) \
  do {                                              \
    if (!(msg).has_##field()) {                     \
      ToProto((value), (msg).mutable_##field());    \
    }                                               \
  } while (false)

absl::Status ValidateFile(const std::string& key_path, const std::string& file) {
  return ReadFile(key_path, file).status();
}

// The DSN in environment variable `name` (key `key_path`), trimmed and
// parsed (never quoted in a message: `whose` names it).
absl::StatusOr<std::string> DsnFromEnv(const ConfigSources& sources, const std::string& key_path,
                                       const std::string& name, const std::string& whose) {
  std::optional<std::string> value = sources.getenv ? sources.getenv(name) : std::nullopt;
  if (!value) {
    return KeyError(key_path, absl::StrCat("environment variable ", name, " is not set"));
  }
  std::string dsn(absl::StripAsciiWhitespace(*value));
  if (dsn.empty()) {
    return KeyError(key_path, absl::StrCat("environment variable ", name, " is empty"));
  }
  // The one DSN parser (the store uses it too): a DSN that is ambiguous or
  // malformed stops the start, named by its owner, never quoted.
  if (absl::StatusOr<dsn::Dsn> parsed = dsn::ParseDsn(dsn); !parsed.ok()) {
    return KeyError(key_path, absl::StrCat("the DSN of ", whose, " ", parsed.status().message()));
  }
  return dsn;
}

// The DSN in the (already resolved) secret file `file`, as DsnFromEnv.
absl::StatusOr<std::string> DsnFromFile(const v1::ServerConfig& c, const std::string& key_path,
                                        const std::string& file, const std::string& whose,
                                        std::vector<std::string>* warnings) {
  ASSIGN_OR_RETURN(std::string content, ReadFile(key_path, file));
  RETURN_IF_ERROR(CheckSecretFile(key_path, file, c.allow_insecure_secret_files(), warnings));
  std::string dsn(absl::StripAsciiWhitespace(content));
  if (dsn.empty()) {
    return KeyError(key_path, absl::StrCat("file ", file, " is empty"));
  }
  if (absl::StatusOr<dsn::Dsn> parsed = dsn::ParseDsn(dsn); !parsed.ok()) {
    return KeyError(key_path, absl::StrCat("the DSN of ", whose, " ", parsed.status().message()));
  }
  return dsn;
}

absl::Status ValidateDevServer(const ConfigSources& sources, LoadedConfig* loaded) {
  v1::ServerConfig& c = loaded->proto;
  if (!c.has_dev_server()) return absl::OkStatus();
  v1::DevServerConfig& dev = *c.mutable_dev_server();
  const int kinds =
      (dev.local() ? 1 : 0) + (dev.dsn_env().empty() ? 0 : 1) + (dev.dsn_file().empty() ? 0 : 1);
  if (kinds != 1) {
    return KeyError("dev_server", "exactly one of local: true, dsn_env and dsn_file is required");
  }
  if (!dev.cache_dir().empty()) dev.set_cache_dir(Resolve(sources.base_dir, dev.cache_dir()));
  if (dev.local()) {
    loaded->dev_dsn = "local";
  } else if (!dev.dsn_env().empty()) {
    ASSIGN_OR_RETURN(loaded->dev_dsn,
                     DsnFromEnv(sources, "dev_server.dsn_env", dev.dsn_env(), "the dev server"));
  } else {
    dev.set_dsn_file(Resolve(sources.base_dir, dev.dsn_file()));
    ASSIGN_OR_RETURN(loaded->dev_dsn, DsnFromFile(c, "dev_server.dsn_file", dev.dsn_file(),
                                                  "the dev server", &loaded->warnings));
  }
  return absl::OkStatus();
}

absl::Status ValidateControlDatabase(const ConfigSources& sources, LoadedConfig* loaded) {
  v1::ServerConfig& c = loaded->proto;
  if (!c.replica_name().empty() &&
      (!IsName(c.replica_name()) || c.replica_name().size() > kMaxReplicaNameBytes)) {
    return KeyError("replica_name", absl::StrCat("must be 1 to ", kMaxReplicaNameBytes,
                                                 " letters, digits, '_', '-' and '.'"));
  }
  if (!c.has_control_database()) return absl::OkStatus();
  v1::ControlDatabaseConfig& control = *c.mutable_control_database();
  if (control.dsn_env().empty() == control.dsn_file().empty()) {
    return KeyError("control_database", "exactly one of dsn_env and dsn_file is required");
  }
  if (!control.dsn_env().empty()) {
    ASSIGN_OR_RETURN(loaded->control_dsn, DsnFromEnv(sources, "control_database.dsn_env",
                                                     control.dsn_env(), "the control database"));
  } else {
    control.set_dsn_file(Resolve(sources.base_dir, control.dsn_file()));
    ASSIGN_OR_RETURN(loaded->control_dsn,
                     DsnFromFile(c, "control_database.dsn_file", control.dsn_file(),
                                 "the control database", &loaded->warnings));
  }
  SCHEMAD_DEFAULT_DURATION(control, lease, kDefaultControlLease);
  const absl::Duration lease = FromProto(control.lease());
  if (lease < kMinControlLease || lease > kMaxControlLease) {
    return KeyError("control_database.lease",
                    absl::StrCat(absl::FormatDuration(lease),
                                 " is out of range: ", absl::FormatDuration(kMinControlLease),
                                 " to ", absl::FormatDuration(kMaxControlLease)));
  }
  return absl::OkStatus();
}

absl::Status Validate(const ConfigSources& sources, LoadedConfig* loaded) {
  v1::ServerConfig& c = loaded->proto;
  RETURN_IF_ERROR(ValidateListen("listen", c.listen()));
  RETURN_IF_ERROR(CheckExposure(c, "listen", c.listen()));
  if (c.log_format().empty()) {
    c.set_log_format("logfmt");
  }
  if (c.log_format() != "logfmt" && c.log_format() != "json") {
    return KeyError("log_format", "expected logfmt or json");
  }
  std::vector<std::string>& warnings = loaded->warnings;

  if (c.has_tls()) {
    v1::TlsConfig& tls = *c.mutable_tls();
    if (tls.cert_file().empty()) {
      return KeyError("tls.cert_file", "required with tls");
    }
    if (tls.key_file().empty()) {
      return KeyError("tls.key_file", "required with tls");
    }
    tls.set_cert_file(Resolve(sources.base_dir, tls.cert_file()));
    tls.set_key_file(Resolve(sources.base_dir, tls.key_file()));
    RETURN_IF_ERROR(ValidateFile("tls.cert_file", tls.cert_file()));
    RETURN_IF_ERROR(ValidateFile("tls.key_file", tls.key_file()));
    if (!tls.client_ca_file().empty()) {
      tls.set_client_ca_file(Resolve(sources.base_dir, tls.client_ca_file()));
      RETURN_IF_ERROR(ValidateFile("tls.client_ca_file", tls.client_ca_file()));
    } else if (tls.require_client_cert()) {
      return KeyError("tls.require_client_cert", "needs tls.client_ca_file");
    }
  }
  if (!c.tokens_file().empty()) {
    c.set_tokens_file(Resolve(sources.base_dir, c.tokens_file()));
    RETURN_IF_ERROR(ValidateFile("tokens_file", c.tokens_file()));
    RETURN_IF_ERROR(CheckSecretFile("tokens_file", c.tokens_file(), c.allow_insecure_secret_files(),
                                    &warnings));
  }

  v1::Timeouts& t = *c.mutable_timeouts();
  SCHEMAD_DEFAULT_DURATION(t, lock_wait, kDefaultLockWait);
  SCHEMAD_DEFAULT_DURATION(t, lock_timeout, absl::ZeroDuration());
  SCHEMAD_DEFAULT_DURATION(t, statement_timeout, absl::ZeroDuration());
  SCHEMAD_DEFAULT_DURATION(t, connect_timeout, kDefaultConnectTimeout);
  SCHEMAD_DEFAULT_DURATION(c, shutdown_grace, kDefaultShutdownGrace);
  SCHEMAD_DEFAULT_DURATION(c, operation_retention, kDefaultOperationRetention);
  if (c.max_retained_operations() == 0) {
    c.set_max_retained_operations(kDefaultMaxRetainedOperations);
  }
  RETURN_IF_ERROR(CheckRange("max_retained_operations", c.max_retained_operations(), 1,
                             kMaxRetainedOperationsLimit));
  RETURN_IF_ERROR(CheckDuration("timeouts.lock_wait", t.lock_wait(), kMaxLockWait));
  RETURN_IF_ERROR(CheckDuration("timeouts.lock_timeout", t.lock_timeout(), kMaxStatementTimeout));
  RETURN_IF_ERROR(
      CheckDuration("timeouts.statement_timeout", t.statement_timeout(), kMaxStatementTimeout));
  RETURN_IF_ERROR(
      CheckDuration("timeouts.connect_timeout", t.connect_timeout(), kMaxConnectTimeout));
  RETURN_IF_ERROR(CheckDuration("shutdown_grace", c.shutdown_grace(), kMaxShutdownGrace));
  RETURN_IF_ERROR(
      CheckDuration("operation_retention", c.operation_retention(), kMaxOperationRetention));
  if (c.has_metrics()) {
    v1::MetricsConfig& m = *c.mutable_metrics();
    RETURN_IF_ERROR(ValidateListen("metrics.listen", m.listen()));
    if (absl::StartsWith(m.listen(), "unix:")) {
      return KeyError("metrics.listen", "expected host:port (an HTTP listener)");
    }
    SCHEMAD_DEFAULT_DURATION(m, refresh_interval, kDefaultMetricsRefresh);
    if (FromProto(m.refresh_interval()) < kMinMetricsRefresh) {
      return KeyError("metrics.refresh_interval",
                      absl::StrCat("at least ", absl::FormatDuration(kMinMetricsRefresh)));
    }
    RETURN_IF_ERROR(
        CheckDuration("metrics.refresh_interval", m.refresh_interval(), kMaxMetricsRefresh));
  }

  v1::Pools& p = *c.mutable_pools();
  struct PoolField {
    const char* name;
    int32_t value;
    int32_t fallback;
    void (v1::Pools::*set)(int32_t);
  };
  const bool min_idle_set = p.has_min_idle_sessions();
  const bool no_idle_sessions = min_idle_set && p.min_idle_sessions() == 0;
  for (const PoolField& f :
       {PoolField{"max_sessions_per_database", p.max_sessions_per_database(),
                  kDefaultMaxSessionsPerDatabase, &v1::Pools::set_max_sessions_per_database},
        PoolField{"min_idle_sessions", p.min_idle_sessions(), kDefaultMinIdleSessions,
                  &v1::Pools::set_min_idle_sessions},
        PoolField{"rpc_workers", p.rpc_workers(), kDefaultRpcWorkers, &v1::Pools::set_rpc_workers},
        PoolField{"operation_workers", p.operation_workers(), kDefaultOperationWorkers,
                  &v1::Pools::set_operation_workers}}) {
    if (f.value < 0) {
      return KeyError(absl::StrCat("pools.", f.name), "must not be negative");
    }
    if (f.value == 0) {
      (p.*f.set)(f.fallback);
    } else {
      RETURN_IF_ERROR(CheckRange(absl::StrCat("pools.", f.name), f.value, 1, kMaxPoolSize));
    }
  }
  if (no_idle_sessions) {
    p.set_min_idle_sessions(0);
  }
  SCHEMAD_DEFAULT_DURATION(p, idle_session_timeout, kDefaultIdleSessionTimeout);
  RETURN_IF_ERROR(CheckDuration("pools.idle_session_timeout", p.idle_session_timeout(),
                                kMaxIdleSessionTimeout));
  if (p.min_idle_sessions() > p.max_sessions_per_database()) {
    if (min_idle_set) {
      return KeyError("pools.min_idle_sessions", "must not exceed pools.max_sessions_per_database");
    }
    p.set_min_idle_sessions(p.max_sessions_per_database());
  }

  if (c.migration_sets_size() == 0) {
    return KeyError("migration_sets", "at least one migration set is required");
  }
  RETURN_IF_ERROR(
      CheckRange("migration_sets (count)", c.migration_sets_size(), 1, kMaxMigrationSets));
  RETURN_IF_ERROR(CheckRange("databases (count)", c.databases_size(), 0, kMaxDatabases));
  absl::flat_hash_set<std::string> set_names;
  for (int i = 0; i < c.migration_sets_size(); ++i) {
    v1::MigrationSetConfig& set = *c.mutable_migration_sets(i);
    const std::string path = absl::StrCat("migration_sets[", i, "]");
    if (!IsName(set.name())) {
      return KeyError(Join(path, "name"), set.name().empty()
                                              ? "required"
                                              : "must be letters, digits, '_', '-' and '.'");
    }
    if (!set_names.insert(set.name()).second) {
      return KeyError(Join(path, "name"),
                      absl::StrCat("duplicate migration set \"", set.name(), "\""));
    }
    if (set.directory().empty()) {
      return KeyError(Join(path, "directory"), "required");
    }
    set.set_directory(Resolve(sources.base_dir, set.directory()));
    if (!set.transaction().empty() && !engine::ParseTransactionScope(set.transaction())) {
      return KeyError(Join(path, "transaction"),
                      absl::StrCat("must be per-command or per-revision, not \"",
                                   set.transaction().substr(0, 64), "\""));
    }
  }

  if (c.databases_size() == 0) {
    return KeyError("databases", "at least one database is required");
  }
  absl::flat_hash_set<std::string> db_names;
  loaded->dsns.clear();
  for (int i = 0; i < c.databases_size(); ++i) {
    v1::DatabaseConfig& db = *c.mutable_databases(i);
    const std::string path = absl::StrCat("databases[", i, "]");
    if (!IsName(db.name())) {
      return KeyError(Join(path, "name"),
                      db.name().empty() ? "required" : "must be letters, digits, '_', '-' and '.'");
    }
    if (!db_names.insert(db.name()).second) {
      return KeyError(Join(path, "name"), absl::StrCat("duplicate database \"", db.name(), "\""));
    }
    if (db.migration_set().empty()) {
      return KeyError(Join(path, "migration_set"), "required");
    }
    if (!set_names.contains(db.migration_set())) {
      return KeyError(Join(path, "migration_set"),
                      absl::StrCat("no migration set named \"", db.migration_set(), "\""));
    }
    if (db.dsn_env().empty() == db.dsn_file().empty()) {
      return KeyError(path, "exactly one of dsn_env and dsn_file is required");
    }
    std::string dsn;
    if (!db.dsn_env().empty()) {
      ASSIGN_OR_RETURN(dsn, DsnFromEnv(sources, Join(path, "dsn_env"), db.dsn_env(),
                                       absl::StrCat("database ", db.name())));
    } else {
      db.set_dsn_file(Resolve(sources.base_dir, db.dsn_file()));
      ASSIGN_OR_RETURN(dsn, DsnFromFile(c, Join(path, "dsn_file"), db.dsn_file(),
                                        absl::StrCat("database ", db.name()), &warnings));
    }
    loaded->dsns.push_back(std::move(dsn));

    if (db.version_table().empty()) {
      db.set_version_table("alembic_version");
    }
    // The one rule for version-table names, shared with schemactl --version-table.
    if (absl::StatusOr<VersionTableName> vt = ParseVersionTableName(db.version_table()); !vt.ok()) {
      return KeyError(Join(path, "version_table"), vt.status().message());
    }
    RETURN_IF_ERROR(CheckRange(Join(path, "labels (count)"), db.labels_size(), 0, kMaxLabels));
    for (const auto& [key, value] : db.labels()) {
      if (key.empty() || key.size() > kMaxLabelBytes || value.size() > kMaxLabelBytes) {
        return KeyError(Join(path, "labels"),
                        absl::StrCat("keys must be 1 to ", kMaxLabelBytes,
                                     " bytes and values at most ", kMaxLabelBytes));
      }
    }
    if (!db.has_allow_ensure_head_apply()) {
      db.set_allow_ensure_head_apply(true);
    }
    SCHEMAD_DEFAULT_DURATION(db, lock_wait, FromProto(t.lock_wait()));
    SCHEMAD_DEFAULT_DURATION(db, lock_timeout, FromProto(t.lock_timeout()));
    SCHEMAD_DEFAULT_DURATION(db, statement_timeout, FromProto(t.statement_timeout()));
    RETURN_IF_ERROR(CheckDuration(Join(path, "lock_wait"), db.lock_wait(), kMaxLockWait));
    RETURN_IF_ERROR(
        CheckDuration(Join(path, "lock_timeout"), db.lock_timeout(), kMaxStatementTimeout));
    RETURN_IF_ERROR(CheckDuration(Join(path, "statement_timeout"), db.statement_timeout(),
                                  kMaxStatementTimeout));
  }
  RETURN_IF_ERROR(ValidateDevServer(sources, loaded));
  return ValidateControlDatabase(sources, loaded);
}

}  // namespace

bool IsLoopbackListen(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix:") || absl::StartsWith(listen, "unix-abstract:")) {
    return true;  // a local socket
  }
  absl::string_view host = listen.substr(0, listen.rfind(':'));
  if (absl::ConsumePrefix(&host, "[")) {
    absl::ConsumeSuffix(&host, "]");
  }
  if (host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1") {
    return true;
  }
  // 127.0.0.0/8, written as a dotted quad.
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  int first = 0;
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &first) || first != 127) {
    return false;
  }
  for (absl::string_view part : parts) {
    int octet = 0;
    if (!absl::SimpleAtoi(part, &octet) || octet < 0 || octet > 255) {
      return false;
    }
  }
  return true;
}

absl::Status CheckListenExposure(const v1::ServerConfig& config, const std::string& listen) {
  return CheckExposure(config, "--listen", listen);
}

absl::StatusOr<absl::Duration> ParseConfigDuration(absl::string_view text) {
  // One grammar for revision headers, schemactl flags and the configuration.
  return engine::ParseDuration(absl::AsciiStrToLower(absl::StripAsciiWhitespace(text)));
}

absl::StatusOr<LoadedConfig> ParseConfig(absl::string_view yaml, const ConfigSources& sources) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) {
    return absl::InvalidArgumentError("the configuration is empty");
  }
  LoadedConfig loaded;
  try {
    RETURN_IF_ERROR(FromYaml(root, "", &loaded.proto));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("line ", e.mark.line + 1, ": ", e.msg));
  }
  RETURN_IF_ERROR(Validate(sources, &loaded));
  return loaded;
}

absl::StatusOr<LoadedConfig> LoadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> content = ReadFile("--config", path);
  if (!content.ok()) {
    return content.status();
  }
  ConfigSources sources;
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  sources.base_dir = ec ? "." : absolute.parent_path().string();
  sources.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  };
  absl::StatusOr<LoadedConfig> loaded = ParseConfig(*content, sources);
  if (!loaded.ok()) {
    return Annotate(loaded.status(), path);
  }
  return loaded;
}

std::string ReplicaNameOf(const v1::ServerConfig& config) {
  if (!config.replica_name().empty()) return config.replica_name();
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "schemad");
  }
  std::string name = absl::StrCat(host, "-", getpid());
  for (char& ch : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-' &&
        ch != '.') {
      ch = '-';
    }
  }
  if (name.size() > kMaxReplicaNameBytes) name = name.substr(name.size() - kMaxReplicaNameBytes);
  return name;
}

absl::Status CheckReloadable(const v1::ServerConfig& running, const v1::ServerConfig& reloaded) {
  static constexpr const char* kRestartOnly[] = {"listen",
                                                 "tls",
                                                 "metrics",
                                                 "reflection",
                                                 "log_format",
                                                 "pools",
                                                 "shutdown_grace",
                                                 "operation_retention",
                                                 "max_retained_operations",
                                                 "dev_server",
                                                 "control_database",
                                                 "replica_name"};
  const google::protobuf::Descriptor* descriptor = v1::ServerConfig::descriptor();
  for (const char* name : kRestartOnly) {
    const google::protobuf::FieldDescriptor* field = descriptor->FindFieldByName(name);
    if (field == nullptr) {
      return absl::InternalError(absl::StrCat("no config field ", name));
    }
    google::protobuf::util::MessageDifferencer differ;
    differ.set_scope(google::protobuf::util::MessageDifferencer::FULL);
    if (!differ.CompareWithFields(running, reloaded, {field}, {field})) {
      return absl::FailedPreconditionError(
          absl::StrCat(name, " cannot change on reload; restart schemad to change it"));
    }
  }
  return absl::OkStatus();
}

}  // namespace schemad::server
