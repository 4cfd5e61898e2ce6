// Configuration loading and validation (service/server/config.h), and the
// start-up checks of the registry that need no database: migration sets that
// fail to load or to form a graph stop the start with the engine's message.
#include "service/server/config.h"

#include <stdlib.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/server/proto_time.h"
#include "service/server/registry.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace schemad::server {
namespace {

using ::schemad::testing::StatusIs;
using ::schemad::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecretDsn[] = "postgresql://app:s3cr3t-pw@db.example:5432/site_a";

class ConfigTest : public ::testing::Test {
 protected:
  ConfigTest() {
    dir_.Write("migrations/modax/.keep", "");
    sources_.base_dir = dir_.path();
    sources_.getenv = [this](const std::string& name) -> std::optional<std::string> {
      auto it = env_.find(name);
      if (it == env_.end()) {
        return std::nullopt;
      }
      return it->second;
    };
    env_["SITE_A_DSN"] = kSecretDsn;
  }

  absl::StatusOr<LoadedConfig> Parse(const std::string& yaml) {
    return ParseConfig(yaml, sources_);
  }

  TempDir dir_;
  ConfigSources sources_;
  std::map<std::string, std::string> env_;
};

constexpr char kMinimal[] = R"(
listen: 127.0.0.1:50051
migration_sets:
  - name: modax
    directory: migrations/modax
databases:
  - name: site-a
    migration_set: modax
    dsn_env: SITE_A_DSN
    labels: {region: eu, env: prod}
)";

TEST_F(ConfigTest, MinimalConfigGetsDefaults) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig config, Parse(kMinimal));
  const v1::ServerConfig& c = config.proto;
  EXPECT_EQ(c.listen(), "127.0.0.1:50051");
  ASSERT_EQ(config.dsns.size(), 1u);
  EXPECT_EQ(config.dsns[0], kSecretDsn);
  EXPECT_EQ(FromProto(c.timeouts().lock_wait()), absl::Seconds(60));
  EXPECT_EQ(FromProto(c.timeouts().lock_timeout()), absl::ZeroDuration());
  EXPECT_EQ(FromProto(c.shutdown_grace()), absl::Seconds(30));
  EXPECT_EQ(c.pools().max_sessions_per_database(), kDefaultMaxSessionsPerDatabase);
  EXPECT_EQ(c.pools().rpc_workers(), kDefaultRpcWorkers);
  EXPECT_EQ(c.migration_sets(0).directory(), dir_.path() + "/migrations/modax");
  const v1::DatabaseConfig& db = c.databases(0);
  EXPECT_TRUE(db.allow_ensure_head_apply());
  EXPECT_EQ(db.version_table(), "alembic_version");
  EXPECT_EQ(FromProto(db.lock_wait()), absl::Seconds(60));
  EXPECT_EQ(db.labels().at("region"), "eu");
  EXPECT_EQ(db.labels().at("env"), "prod");
  // The DSN lives only in `dsns`.
  EXPECT_THAT(c.DebugString(), Not(HasSubstr("s3cr3t")));
}

TEST_F(ConfigTest, EverySettingParses) {
  dir_.Write("tls/cert.pem", "cert");
  dir_.Write("tls/key.pem", "key");
  dir_.Write("tls/ca.pem", "ca");
  dir_.Write("tokens", "x");
  dir_.Write("secrets/site-b", "  postgresql://b@host/site_b\n");
  ASSERT_OK_AND_ASSIGN(LoadedConfig config, Parse(R"(
listen: 0.0.0.0:0
tls:
  cert_file: tls/cert.pem
  key_file: tls/key.pem
  client_ca_file: tls/ca.pem
  require_client_cert: true
tokens_file: tokens
reflection: true
timeouts: {lock_wait: 2min, lock_timeout: 5s, statement_timeout: 1h30min, connect_timeout: 3s}
pools: {max_sessions_per_database: 4, min_idle_sessions: 2, rpc_workers: 3, operation_workers: 2}
shutdown_grace: 10s
operation_retention: 1d
max_retained_operations: 50
migration_sets:
  - {name: modax, directory: migrations/modax}
databases:
  - name: site-a
    migration_set: modax
    dsn_env: SITE_A_DSN
    allow_ensure_head_apply: false
    lock_wait: 500ms
    version_table: ops.alembic_version
  - name: site-b
    migration_set: modax
    dsn_file: secrets/site-b
)"));
  const v1::ServerConfig& c = config.proto;
  EXPECT_TRUE(c.tls().require_client_cert());
  EXPECT_EQ(c.tls().cert_file(), dir_.path() + "/tls/cert.pem");
  EXPECT_EQ(c.tokens_file(), dir_.path() + "/tokens");
  EXPECT_TRUE(c.reflection());
  EXPECT_EQ(FromProto(c.timeouts().lock_wait()), absl::Minutes(2));
  EXPECT_EQ(FromProto(c.timeouts().statement_timeout()), absl::Minutes(90));
  EXPECT_EQ(FromProto(c.operation_retention()), absl::Hours(24));
  EXPECT_EQ(c.pools().min_idle_sessions(), 2);
  EXPECT_EQ(c.max_retained_operations(), 50);
  EXPECT_FALSE(c.databases(0).allow_ensure_head_apply());
  EXPECT_EQ(FromProto(c.databases(0).lock_wait()), absl::Milliseconds(500));
  EXPECT_EQ(FromProto(c.databases(0).lock_timeout()), absl::Seconds(5));  // inherited
  EXPECT_EQ(c.databases(0).version_table(), "ops.alembic_version");
  EXPECT_EQ(FromProto(c.databases(1).lock_wait()), absl::Minutes(2));
  EXPECT_EQ(config.dsns[1], "postgresql://b@host/site_b");  // trimmed
}

TEST_F(ConfigTest, UnknownKeysNameTheirPath) {
  EXPECT_THAT(Parse(std::string(kMinimal) + "lisen: x\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lisen: unknown key")));
  EXPECT_THAT(
      Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases:
  - {name: a, migration_set: modax, dsn_env: SITE_A_DSN}
  - {name: b, migration_set: modax, dsn_env: SITE_A_DSN, lable: x}
)"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("databases[1].lable: unknown key")));
  EXPECT_THAT(
      Parse(std::string(kMinimal) + "timeouts: {lock_wiat: 1s}\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeouts.lock_wiat: unknown key")));
}

TEST_F(ConfigTest, MetricsNeedAnHttpAddressAndASaneRefresh) {
  const auto with = [](const std::string& extra) { return std::string(kMinimal) + extra; };
  ASSERT_OK_AND_ASSIGN(LoadedConfig config, Parse(with("metrics: {listen: 0.0.0.0:9464}\n")));
  EXPECT_EQ(config.proto.metrics().listen(), "0.0.0.0:9464");
  EXPECT_EQ(FromProto(config.proto.metrics().refresh_interval()), kDefaultMetricsRefresh);
  ASSERT_OK_AND_ASSIGN(config,
                       Parse(with("metrics: {listen: \"[::1]:0\", refresh_interval: 5s}\n")));
  EXPECT_EQ(FromProto(config.proto.metrics().refresh_interval()), absl::Seconds(5));
  EXPECT_FALSE(Parse(kMinimal)->proto.has_metrics());

  EXPECT_THAT(Parse(with("metrics: {refresh_interval: 5s}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("metrics.listen: required")));
  EXPECT_THAT(Parse(with("metrics: {listen: 9464}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("metrics.listen: expected")));
  EXPECT_THAT(Parse(with("metrics: {listen: \"unix:/run/m.sock\"}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("metrics.listen")));
  EXPECT_THAT(Parse(with("metrics: {listen: 127.0.0.1:0, refresh_interval: 100ms}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metrics.refresh_interval: at least 1s")));
  EXPECT_THAT(Parse(with("metrics: {listen: 127.0.0.1:0, refresh_interval: 2d}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metrics.refresh_interval: 48h is out of range")));
  EXPECT_THAT(Parse(with("metrics: {listen: 127.0.0.1:0, path: /m}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("metrics.path: unknown key")));
}

TEST_F(ConfigTest, DevServerIsLocalOrADsnAndNeverQuoted) {
  auto with = [](const std::string& extra) { return std::string(kMinimal) + extra; };
  ASSERT_OK_AND_ASSIGN(LoadedConfig none, Parse(kMinimal));
  EXPECT_EQ(none.dev_dsn, "");
  ASSERT_OK_AND_ASSIGN(LoadedConfig local,
                       Parse(with("dev_server: {local: true, cache_dir: cache/schemas}\n")));
  EXPECT_EQ(local.dev_dsn, "local");
  EXPECT_EQ(local.proto.dev_server().cache_dir(), dir_.path() + "/cache/schemas");
  env_["DEV_DSN"] = "postgresql://dev:dev-s3cret@dev.example/postgres";
  ASSERT_OK_AND_ASSIGN(LoadedConfig env, Parse(with("dev_server: {dsn_env: DEV_DSN}\n")));
  EXPECT_EQ(env.dev_dsn, env_["DEV_DSN"]);
  dir_.Write("secrets/dev", "host=dev.example user=dev password=dev-s3cret\n");
  ASSERT_OK_AND_ASSIGN(LoadedConfig file, Parse(with("dev_server: {dsn_file: secrets/dev}\n")));
  EXPECT_EQ(file.dev_dsn, "host=dev.example user=dev password=dev-s3cret");

  EXPECT_THAT(Parse(with("dev_server: {}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("dev_server"), HasSubstr("exactly one"))));
  EXPECT_THAT(Parse(with("dev_server: {local: true, dsn_env: DEV_DSN}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one")));
  EXPECT_THAT(Parse(with("dev_server: {dsn_env: NO_SUCH_VAR}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("dev_server.dsn_env"), HasSubstr("NO_SUCH_VAR"))));
  env_["BAD_DEV_DSN"] = "postgresql://dev:dev-s3cret@dev.example:notaport/x";
  absl::StatusOr<LoadedConfig> bad = Parse(with("dev_server: {dsn_env: BAD_DEV_DSN}\n"));
  EXPECT_THAT(
      bad, StatusIs(absl::StatusCode::kInvalidArgument,
                    AllOf(HasSubstr("the DSN of the dev server"), Not(HasSubstr("dev-s3cret")))));
  absl::StatusOr<LoadedConfig> missing = Parse(with("dev_server: {dsn_file: secrets/none}\n"));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("dev_server.dsn_file"));
}

TEST_F(ConfigTest, ControlDatabaseIsADsnWithABoundedLeaseAndNeverQuoted) {
  auto with = [](const std::string& extra) { return std::string(kMinimal) + extra; };
  ASSERT_OK_AND_ASSIGN(LoadedConfig none, Parse(kMinimal));
  EXPECT_EQ(none.control_dsn, "");
  EXPECT_FALSE(none.proto.has_control_database());
  env_["CONTROL_DSN"] = "postgresql://ctl:ctl-s3cret@control.example/schemad";
  ASSERT_OK_AND_ASSIGN(LoadedConfig env, Parse(with("control_database: {dsn_env: CONTROL_DSN}\n"
                                                    "replica_name: replica-a.eu_1\n")));
  EXPECT_EQ(env.control_dsn, env_["CONTROL_DSN"]);
  EXPECT_EQ(FromProto(env.proto.control_database().lease()), kDefaultControlLease);
  EXPECT_EQ(ReplicaNameOf(env.proto), "replica-a.eu_1");
  dir_.Write("secrets/control", "host=control.example user=ctl password=ctl-s3cret\n");
  ASSERT_OK_AND_ASSIGN(LoadedConfig file,
                       Parse(with("control_database: {dsn_file: secrets/control, lease: 5s}\n")));
  EXPECT_EQ(file.control_dsn, "host=control.example user=ctl password=ctl-s3cret");
  EXPECT_EQ(file.proto.control_database().dsn_file(), dir_.path() + "/secrets/control");
  EXPECT_EQ(FromProto(file.proto.control_database().lease()), absl::Seconds(5));
  // Without replica_name: hostname-pid, a valid name.
  const std::string fallback = ReplicaNameOf(file.proto);
  EXPECT_THAT(fallback, HasSubstr(absl::StrCat("-", getpid())));
  EXPECT_OK(Parse(with(absl::StrCat("replica_name: ", fallback, "\n"))).status());

  EXPECT_THAT(Parse(with("control_database: {}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("control_database: exactly one of dsn_env and dsn_file")));
  EXPECT_THAT(Parse(with("control_database: {dsn_env: CONTROL_DSN, dsn_file: secrets/control}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one")));
  EXPECT_THAT(Parse(with("control_database: {dsn_env: NO_SUCH_VAR}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("control_database.dsn_env"), HasSubstr("NO_SUCH_VAR"))));
  EXPECT_THAT(Parse(with("control_database: {dsn_env: CONTROL_DSN, lease: 1s}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("control_database.lease: 1s is out of range: 2s to 1h")));
  EXPECT_THAT(Parse(with("control_database: {dsn_env: CONTROL_DSN, lease: 2h}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("control_database.lease: 2h is out of range")));
  EXPECT_THAT(Parse(with("replica_name: \"a b\"\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("replica_name: must be")));
  EXPECT_THAT(Parse(with(absl::StrCat("replica_name: ", std::string(129, 'r'), "\n"))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("replica_name")));
  env_["BAD_CONTROL_DSN"] = "postgresql://ctl:ctl-s3cret@control.example:notaport/x";
  absl::StatusOr<LoadedConfig> bad = Parse(with("control_database: {dsn_env: BAD_CONTROL_DSN}\n"));
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            AllOf(HasSubstr("the DSN of the control database"),
                                  Not(HasSubstr("ctl-s3cret")))));
  std::filesystem::permissions(dir_.path() + "/secrets/control",
                               std::filesystem::perms::owner_read |
                                   std::filesystem::perms::owner_write |
                                   std::filesystem::perms::others_read);
  EXPECT_THAT(
      Parse(with("control_database: {dsn_file: secrets/control}\n")),
      StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("control_database.dsn_file"),
                                                         HasSubstr("readable by other users"))));

  // Only a restart changes it.
  EXPECT_THAT(CheckReloadable(file.proto, env.proto),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("control_database cannot change on reload")));
  v1::ServerConfig renamed = file.proto;
  renamed.set_replica_name("other");
  EXPECT_THAT(CheckReloadable(file.proto, renamed),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("replica_name cannot change on reload")));
}

TEST_F(ConfigTest, ZeroIdleSessionsIsAChoiceAndIdleSessionsTimeOut) {
  const auto with = [](const std::string& extra) { return std::string(kMinimal) + extra; };
  ASSERT_OK_AND_ASSIGN(LoadedConfig config, Parse(kMinimal));
  EXPECT_EQ(config.proto.pools().min_idle_sessions(), kDefaultMinIdleSessions);
  EXPECT_EQ(FromProto(config.proto.pools().idle_session_timeout()), kDefaultIdleSessionTimeout);
  ASSERT_OK_AND_ASSIGN(config,
                       Parse(with("pools: {min_idle_sessions: 0, idle_session_timeout: 30s}\n")));
  EXPECT_EQ(config.proto.pools().min_idle_sessions(), 0);
  EXPECT_EQ(FromProto(config.proto.pools().idle_session_timeout()), absl::Seconds(30));
  ASSERT_OK_AND_ASSIGN(config, Parse(with("pools: {idle_session_timeout: 0}\n")));
  EXPECT_EQ(FromProto(config.proto.pools().idle_session_timeout()), absl::ZeroDuration());
  EXPECT_THAT(Parse(with("pools: {min_idle_sessions: -1}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pools.min_idle_sessions: must not be negative")));
  EXPECT_THAT(Parse(with("pools: {idle_session_timeout: 8d}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pools.idle_session_timeout: 192h is out of range")));
}

TEST_F(ConfigTest, WatchIsAnOptionalBooleanPerMigrationSet) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig unwatched, Parse(kMinimal));
  EXPECT_FALSE(unwatched.proto.migration_sets(0).watch());
  const auto with_watch = [](const std::string& value) {
    return absl::StrCat(R"(
listen: 127.0.0.1:1
migration_sets:
  - {name: modax, directory: migrations/modax}
  - {name: other, directory: migrations/modax, watch: )",
                        value, R"(}
databases:
  - {name: a, migration_set: modax, dsn_env: SITE_A_DSN}
)");
  };
  ASSERT_OK_AND_ASSIGN(LoadedConfig watched, Parse(with_watch("true")));
  EXPECT_FALSE(watched.proto.migration_sets(0).watch());
  EXPECT_TRUE(watched.proto.migration_sets(1).watch());
  EXPECT_THAT(Parse(with_watch("yes")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("migration_sets[1].watch: expected true or false, got \"yes\"")));
  EXPECT_THAT(Parse(with_watch("[true]")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("migration_sets[1].watch: expected true or false, got a list")));
}

TEST_F(ConfigTest, MissingEnvironmentVariableNamesKeyAndVariable) {
  EXPECT_THAT(Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases:
  - {name: a, migration_set: modax, dsn_env: SITE_A_DSN}
  - {name: b, migration_set: modax, dsn_env: SITE_B_DSN}
)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("databases[1].dsn_env: environment variable SITE_B_DSN is not "
                                 "set")));
}

TEST_F(ConfigTest, BadValuesNameTheirPath) {
  const auto with = [](const std::string& extra) { return std::string(kMinimal) + extra; };
  EXPECT_THAT(Parse(with("shutdown_grace: 30\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("shutdown_grace: invalid duration '30': a unit is required")));
  EXPECT_THAT(Parse(with("shutdown_grace: 3 fortnights\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown unit")));
  EXPECT_THAT(Parse(with("reflection: yes please\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("reflection: expected true or false")));
  EXPECT_THAT(Parse(with("pools: {rpc_workers: many}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pools.rpc_workers: expected an integer")));
  EXPECT_THAT(Parse(with("pools: {rpc_workers: -1}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pools.rpc_workers: must not be negative")));
  EXPECT_THAT(Parse(with("migration_sets: {name: x}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate key")));
  EXPECT_THAT(Parse(with("tls: {cert_file: nope.pem, key_file: nope.pem}\n")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tls.cert_file: file ")));
  EXPECT_THAT(Parse(with("tokens_file: [a]\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tokens_file: expected a string, got a list")));
}

TEST_F(ConfigTest, StructuralRules) {
  EXPECT_THAT(Parse("migration_sets: []\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listen: required")));
  EXPECT_THAT(Parse("listen: nowhere\n"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   HasSubstr("listen: expected host:port")));
  EXPECT_THAT(Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: a, migration_set: other, dsn_env: SITE_A_DSN}]
)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("databases[0].migration_set: no migration set named \"other\"")));
  EXPECT_THAT(Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases:
  - {name: a, migration_set: modax, dsn_env: SITE_A_DSN}
  - {name: a, migration_set: modax, dsn_env: SITE_A_DSN}
)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("databases[1].name: duplicate database \"a\"")));
  EXPECT_THAT(Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: a, migration_set: modax, dsn_env: SITE_A_DSN, dsn_file: f}]
)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("databases[0]: exactly one of dsn_env and dsn_file")));
  EXPECT_THAT(Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: a, migration_set: modax, dsn_env: SITE_A_DSN, version_table: "x; drop"}]
)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("databases[0].version_table: \"x; drop\" is not a table "
                                       "name: expected table or schema.table"),
                             Not(HasSubstr("s3cr3t")))));
  dir_.Write("tls/cert.pem", "cert");
  EXPECT_THAT(
      Parse(std::string(kMinimal) +
            "tls: {cert_file: tls/cert.pem, key_file: tls/cert.pem, require_client_cert: true}\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("tls.require_client_cert: needs tls.client_ca_file")));
}

TEST_F(ConfigTest, YamlSyntaxErrorGivesLine) {
  EXPECT_THAT(Parse("listen: 127.0.0.1:1\ndatabases: [\n  {name: a\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line ")));
  EXPECT_THAT(Parse(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST_F(ConfigTest, EmptyDsnFileIsAnError) {
  dir_.Write("empty", "\n");
  EXPECT_THAT(Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: a, migration_set: modax, dsn_file: empty}]
)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("databases[0].dsn_file")));
}

// Found by config_fuzz: labels reach clients in protobuf messages, whose
// `string` fields must be valid UTF-8 (tests/fuzz/corpus/config_fuzz/bad_utf8_label).
TEST_F(ConfigTest, StringsMustBeValidUtf8) {
  const auto with_labels = [](const std::string& labels) {
    return absl::StrCat(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: a, migration_set: modax, dsn_env: SITE_A_DSN, labels: )",
                        labels, "}]\n");
  };
  EXPECT_THAT(
      Parse(with_labels("{region: bad\xff\xfe}")),
      StatusIs(absl::StatusCode::kInvalidArgument, "databases[0].labels.region: not valid UTF-8"));
  EXPECT_THAT(Parse(with_labels("{\xc3\x28: eu}")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "databases[0].labels: a key is not valid UTF-8"));
  EXPECT_THAT(
      Parse(std::string(kMinimal) + "\xed\xa0\x80: x\n"),  // a surrogate
      StatusIs(absl::StatusCode::kInvalidArgument, "(top level): a key is not valid UTF-8"));
  ASSERT_OK_AND_ASSIGN(LoadedConfig config, Parse(with_labels("{r\xc3\xa9gion: \xe2\x82\xac}")));
  EXPECT_EQ(config.proto.databases(0).labels().at("r\xc3\xa9gion"), "\xe2\x82\xac");
}

// Found by config_fuzz: `tokens_file: /dev/zero` read without end
// (tests/fuzz/corpus/config_fuzz/dev_zero_tokens).
TEST_F(ConfigTest, NamedFilesAreBoundedRegularFiles) {
  const auto with_tokens = [](const std::string& file) {
    return absl::StrCat(kMinimal, "tokens_file: ", file, "\n");
  };
  dir_.Write("big-tokens", std::string(kMaxConfigFileBytes + 1, '#'));
  EXPECT_THAT(Parse(with_tokens("big-tokens")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tokens_file: " + dir_.path() + "/big-tokens is larger than")));
  dir_.Write("tokens", std::string(kMaxConfigFileBytes, '#'));
  EXPECT_OK(Parse(with_tokens("tokens")));
  EXPECT_THAT(
      Parse(with_tokens("/dev/zero")),
      StatusIs(absl::StatusCode::kInvalidArgument, "tokens_file: /dev/zero is not a regular file"));
  EXPECT_THAT(LoadConfigFile("/dev/zero"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
}

// Defect (issue 9): a password with an unescaped '/' or '@' made libpq read
// part of it as the port and database name, and `--check-config` accepted
// it; the start-up log then printed it.
TEST_F(ConfigTest, AmbiguousOrMalformedDsnIsAConfigErrorThatQuotesNoSecret) {
  struct Case {
    std::string dsn;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"postgresql://modax:kq3/LEAKME+pw=@db:5432/site_c",
       "the DSN of database site-a is not a valid URI: unescaped '@' or '/' in the user-info"},
      {"postgresql://modax:LE@KME@db:5432/site_c", "not a valid URI"},
      {"host=db port=notaport password=LEAKME", "bad port"},
      {"postgresql://modax:LEAKME@db/x?port=notaport", "bad port"},
      {"host=db sslmode=bogus password=LEAKME", "bad sslmode"},
      {"postgresql://modax:LEAKME@db/x?sslmode=bogus", "bad sslmode"},
      {"host=db connect_timeout=abc password=LEAKME", "bad connect_timeout"},
      {"postgresql://modax:LEAKME@db/x?connect_timeout=abc", "bad connect_timeout"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dsn);
    env_["SITE_A_DSN"] = c.dsn;
    EXPECT_THAT(Parse(kMinimal),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("databases[0].dsn_env: "), HasSubstr(c.message),
                               Not(HasSubstr("LEAKME")), Not(HasSubstr("kq3")),
                               Not(HasSubstr("notaport")), Not(HasSubstr("bogus")))));
    dir_.Write("secrets/site-a", c.dsn);
    EXPECT_THAT(Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: site-a, migration_set: modax, dsn_file: secrets/site-a}]
)"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("databases[0].dsn_file: "), HasSubstr(c.message),
                               Not(HasSubstr("LEAKME")))));
  }
}

// Defect (issue 9): `pools: {rpc_workers: 100000000}` passed validation and
// the start then aborted creating the threads.
TEST_F(ConfigTest, PoolsTimeoutsAndSizesAreBounded) {
  const auto with = [](const std::string& extra) { return std::string(kMinimal) + extra; };
  struct Case {
    std::string yaml;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"pools: {rpc_workers: 100000000}",
       "pools.rpc_workers: 100000000 is out of range: 1 to 1024"},
      {"pools: {operation_workers: 5000}", "pools.operation_workers: 5000 is out of range"},
      {"pools: {max_sessions_per_database: 2000}", "pools.max_sessions_per_database: 2000 is"},
      {"pools: {min_idle_sessions: 99999}", "pools.min_idle_sessions: 99999 is out of range"},
      {"pools: {rpc_workers: 99999999999}", "pools.rpc_workers: expected an integer"},
      {"max_retained_operations: 10000000", "max_retained_operations: 10000000 is out of range"},
      {"max_retained_operations: -1", "max_retained_operations: -1 is out of range"},
      {"timeouts: {lock_wait: 400d}", "timeouts.lock_wait: 9600h is out of range: 0 to 24h"},
      {"timeouts: {statement_timeout: 30d}", "timeouts.statement_timeout: 720h is out of range"},
      {"timeouts: {lock_timeout: 30d}", "timeouts.lock_timeout: 720h is out of range"},
      {"timeouts: {connect_timeout: 2h}", "timeouts.connect_timeout: 2h is out of range"},
      {"shutdown_grace: 2d", "shutdown_grace: 48h is out of range"},
      {"operation_retention: 90d", "operation_retention: 2160h is out of range"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    EXPECT_THAT(Parse(with(c.yaml + "\n")),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
  EXPECT_THAT(Parse(R"(
listen: 127.0.0.1:1
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: a, migration_set: modax, dsn_env: SITE_A_DSN, statement_timeout: 8d}]
)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("databases[0].statement_timeout: 192h is out of range")));
  ASSERT_OK(
      Parse(with("pools: {rpc_workers: 1024, operation_workers: 1}\n"
                 "timeouts: {statement_timeout: 7d, lock_wait: 24h}\n")));
}

// Defect (issue 9): the shipped examples served admin-for-everyone on all
// interfaces.
TEST_F(ConfigTest, UnauthenticatedServerOnANonLoopbackAddressIsRefused) {
  const auto config = [](const std::string& listen, const std::string& extra) {
    return "listen: \"" + listen + "\"\n" + extra + R"(
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: a, migration_set: modax, dsn_env: SITE_A_DSN}]
)";
  };
  for (const std::string listen : {"0.0.0.0:50051", "[::]:50051", "10.1.2.3:1", "db-host:1"}) {
    SCOPED_TRACE(listen);
    EXPECT_THAT(
        Parse(config(listen, "")),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 AllOf(HasSubstr("listen: refusing to serve " + listen + " without authentication"),
                       HasSubstr("insecure_allow_unauthenticated: true"))));
    EXPECT_OK(Parse(config(listen, "insecure_allow_unauthenticated: true")));
  }
  dir_.Write("tokens", "x");
  EXPECT_OK(Parse(config("0.0.0.0:50051", "tokens_file: tokens")));
  for (const std::string listen : {"127.0.0.1:50051", "127.9.8.7:1", "localhost:1", "[::1]:1"}) {
    SCOPED_TRACE(listen);
    EXPECT_OK(Parse(config(listen, "")));
    EXPECT_TRUE(IsLoopbackListen(listen));
  }
  EXPECT_TRUE(IsLoopbackListen("unix:/run/schemad.sock"));
  EXPECT_FALSE(IsLoopbackListen("128.0.0.1:1"));
  EXPECT_FALSE(IsLoopbackListen("127.0.0.1.evil.com:1"));
  ASSERT_OK_AND_ASSIGN(LoadedConfig loopback, Parse(config("127.0.0.1:0", "")));
  EXPECT_THAT(CheckListenExposure(loopback.proto, "0.0.0.0:50051"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--listen: refusing")));
  EXPECT_OK(CheckListenExposure(loopback.proto, "127.0.0.1:50051"));
}

// The shipped examples (deploy/, the Kubernetes ConfigMap's file) bind
// loopback or authenticate: whatever else they lack here (files,
// variables), it is not that.
TEST_F(ConfigTest, ShippedExamplesAreNotUnauthenticatedOnTheNetwork) {
  const std::string root = SCHEMAD_SOURCE_DIR;
  std::vector<std::string> yamls;
  for (const std::string file : {"/deploy/schemad.example.yaml", "/deploy/compose.schemad.yaml",
                                 "/deploy/k8s/base/schemad.yaml"}) {
    const YAML::Node node = YAML::LoadFile(root + file);
    yamls.push_back(YAML::Dump(node));
  }
  for (const std::string& yaml : yamls) {
    SCOPED_TRACE(yaml);
    absl::StatusOr<LoadedConfig> config = Parse(yaml);
    EXPECT_THAT(config.status().message(), Not(HasSubstr("without authentication")));
  }
}

// Secret files other users can read are refused unless the configuration
// says otherwise; a group-readable one is accepted with a warning.
TEST_F(ConfigTest, SecretFilesOthersCanReadAreRefused) {
  namespace fs = std::filesystem;
  dir_.Write("secrets/site-a", kSecretDsn);
  dir_.Write("tokens", "x");
  const std::string yaml = R"(
listen: 127.0.0.1:1
tokens_file: tokens
migration_sets: [{name: modax, directory: migrations/modax}]
databases: [{name: a, migration_set: modax, dsn_file: secrets/site-a}]
)";
  ASSERT_OK_AND_ASSIGN(LoadedConfig config, Parse(yaml));
  EXPECT_TRUE(config.warnings.empty());
  for (const std::string file : {"secrets/site-a", "tokens"}) {
    SCOPED_TRACE(file);
    const std::string path = dir_.path() + "/" + file;
    const std::string key = file == "tokens" ? "tokens_file" : "databases[0].dsn_file";
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                              fs::perms::others_read);
    EXPECT_THAT(Parse(yaml), StatusIs(absl::StatusCode::kInvalidArgument,
                                      AllOf(HasSubstr(key + ": " + path),
                                            HasSubstr("readable by other users (mode 0644)"),
                                            HasSubstr("allow_insecure_secret_files"),
                                            Not(HasSubstr("s3cr3t")))));
    ASSERT_OK_AND_ASSIGN(config, Parse(yaml + "allow_insecure_secret_files: true\n"));
    EXPECT_THAT(config.warnings,
                ::testing::ElementsAre(HasSubstr(key + ": " + path + " holds secrets")));
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_write);
    EXPECT_THAT(Parse(yaml), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("writable by others (mode 0620)")));
    fs::permissions(path, fs::perms::owner_read | fs::perms::group_read);
    ASSERT_OK_AND_ASSIGN(config, Parse(yaml));
    EXPECT_THAT(config.warnings, ::testing::ElementsAre(HasSubstr("readable by its group")));
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  }
}

TEST_F(ConfigTest, LogFormatIsLogfmtOrJson) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig config, Parse(kMinimal));
  EXPECT_EQ(config.proto.log_format(), "logfmt");
  ASSERT_OK_AND_ASSIGN(config, Parse(std::string(kMinimal) + "log_format: json\n"));
  EXPECT_EQ(config.proto.log_format(), "json");
  EXPECT_THAT(Parse(std::string(kMinimal) + "log_format: xml\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("log_format: expected logfmt or json")));
}

TEST(ConfigDurationTest, Grammar) {
  EXPECT_EQ(*ParseConfigDuration("0"), absl::ZeroDuration());
  EXPECT_EQ(*ParseConfigDuration("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseConfigDuration("1h30min"), absl::Minutes(90));
  EXPECT_EQ(*ParseConfigDuration("2 s"), absl::Seconds(2));
  EXPECT_EQ(*ParseConfigDuration("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseConfigDuration("1d"), absl::Hours(24));
  EXPECT_FALSE(ParseConfigDuration("5").ok());
  EXPECT_FALSE(ParseConfigDuration("-1s").ok());
  EXPECT_FALSE(ParseConfigDuration("s").ok());
}

TEST_F(ConfigTest, LoadConfigFileResolvesAgainstItsDirectory) {
  setenv("SCHEMAD_CONFIG_TEST_DSN", kSecretDsn, 1);
  const std::string file = dir_.Write("etc/schemad.yaml", R"(
listen: 127.0.0.1:0
migration_sets: [{name: modax, directory: ../migrations/modax}]
databases: [{name: a, migration_set: modax, dsn_env: SCHEMAD_CONFIG_TEST_DSN}]
)");
  ASSERT_OK_AND_ASSIGN(LoadedConfig config, LoadConfigFile(file));
  EXPECT_EQ(config.proto.migration_sets(0).directory(), dir_.path() + "/migrations/modax");
  EXPECT_THAT(LoadConfigFile(dir_.path() + "/missing.yaml"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.yaml")));
}

// ---------------------------------------------------------------- registry

class RegistryTest : public ConfigTest {
 protected:
  absl::StatusOr<std::unique_ptr<Registry>> Create() {
    absl::StatusOr<LoadedConfig> config = Parse(kMinimal);
    if (!config.ok()) {
      return config.status();
    }
    return Registry::Create(*config, std::make_shared<spdlog::logger>("test"));
  }
};

TEST_F(RegistryTest, LoadsSetsAndOpensDatabasesWithoutConnecting) {
  dir_.Write(
      "migrations/modax/a1_init.sql",
      "-- revision: a1\n\n-- +upgrade\nCREATE TABLE t (a int);\n\n-- +downgrade\nDROP TABLE t;\n");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Registry> registry, Create());
  ASSERT_OK_AND_ASSIGN(DatabaseEntry * db, registry->GetDatabase("site-a"));
  EXPECT_EQ(db->set().graph.HeadIds(), std::vector<std::string>{"a1"});
  EXPECT_THAT(db->database().DisplayName(), Not(HasSubstr("s3cr3t")));
  EXPECT_THAT(registry->GetDatabase("site-z"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("site-z")));
}

TEST_F(RegistryTest, GraphErrorStopsTheStartWithTheEnginesMessage) {
  dir_.Write("migrations/modax/b2.sql",
             "-- revision: b2\n-- revises: nosuchparent\n\n-- +upgrade\nSELECT 1;\n");
  EXPECT_THAT(Create(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("migration_sets[0] (modax)"), HasSubstr("nosuchparent"))));
}

TEST_F(RegistryTest, BadRevisionFileStopsTheStart) {
  dir_.Write("migrations/modax/c3.sql", "-- revison: c3\n\n-- +upgrade\nSELECT 1;\n");
  EXPECT_THAT(Create(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("migration_sets[0] (modax)"), HasSubstr("c3.sql"))));
}

TEST_F(RegistryTest, MissingDirectoryStopsTheStart) {
  std::filesystem::remove_all(dir_.path() + "/migrations");
  EXPECT_THAT(Create(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("migration_sets[0]")));
}

}  // namespace
}  // namespace schemad::server
