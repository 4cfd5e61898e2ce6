#include "service/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/security/server_credentials.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"
#include "service/server/control_schema.h"
#include "service/server/proto_time.h"
#include "service/server/request_limits.h"
#include "service/server/resource_limits.h"
#include "service/store/pq/pq_control_store.h"
#include "service/store/pq/pq_database.h"

namespace schemad::server {
namespace {

constexpr absl::Duration kCallDrain = absl::Seconds(5);
constexpr absl::Duration kOperationDrain = absl::Seconds(60);

// Switches the reflection service on or off for one server. Linking
// libgrpc++_reflection registers its plugin for every server of the process
// (a static initializer); this option removes it, and adds it back once when
// `enabled`, whether or not the static registration happened.
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool enabled) : enabled_(enabled) {}
  // grpc::ServerBuilderOption:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->erase(
        std::remove_if(plugins->begin(), plugins->end(),
                       [](const std::unique_ptr<grpc::ServerBuilderPlugin>& plugin) {
                         return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(
                                    plugin.get()) != nullptr;
                       }),
        plugins->end());
    if (enabled_) {
      plugins->push_back(std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
    }
  }

 private:
  bool enabled_;
};

absl::StatusOr<std::string> ReadPem(const std::string& key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": cannot read ", path));
  }
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const v1::ServerConfig& c) {
  if (!c.has_tls()) {
    return grpc::InsecureServerCredentials();
  }
  const v1::TlsConfig& tls = c.tls();
  grpc_ssl_client_certificate_request_type request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  if (!tls.client_ca_file().empty()) {
    request = tls.require_client_cert() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                        : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  grpc::SslServerCredentialsOptions options(request);
  ASSIGN_OR_RETURN(std::string cert, ReadPem("tls.cert_file", tls.cert_file()));
  ASSIGN_OR_RETURN(std::string key, ReadPem("tls.key_file", tls.key_file()));
  options.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  if (!tls.client_ca_file().empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs, ReadPem("tls.client_ca_file", tls.client_ca_file()));
  }
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name, const ServerOptions& options) {
  auto log =
      std::make_shared<spdlog::logger>(name, options.log_sinks.begin(), options.log_sinks.end());
  log->set_level(options.log_level);
  return log;
}

// Descriptors schemad needs beside its pools: gRPC's listener and
// connections, log and config files, the metrics endpoint.
constexpr uint64_t kDescriptorsBesidePools = 256;

// Migrates the control schema and starts the control plane.
absl::StatusOr<std::unique_ptr<ControlPlane>> StartControlPlane(const LoadedConfig& config,
                                                                const ServerOptions& options) {
  const v1::ServerConfig& c = config.proto;
  const std::string replica = ReplicaNameOf(c);
  const auto annotate = [](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat("control_database: ", status.message()));
  };
  store::PqControlOptions control_options;
  control_options.application_name = absl::StrCat("schemad control ", replica);
  control_options.connect_timeout = FromProto(c.timeouts().connect_timeout());
  absl::StatusOr<std::unique_ptr<store::ControlStore>> store =
      store::OpenPqControlStore(config.control_dsn, control_options);
  if (!store.ok()) return annotate(store.status());
  store::PqOptions engine_options;
  engine_options.tables.schema = store::kControlSchema;
  engine_options.application_name = absl::StrCat("schemad control ", replica);
  engine_options.connect_timeout = control_options.connect_timeout;
  absl::StatusOr<std::unique_ptr<store::Database>> database =
      store::OpenPqDatabase(config.control_dsn, engine_options);
  if (!database.ok()) return annotate(database.status());
  // The engine applies the schema's revisions as it applies any: under the
  // migration lock, so replicas starting together apply each once.
  absl::StatusOr<engine::OperationResult> migrated = MigrateControlSchema(
      **store, **database, absl::StrCat("schemad ", SCHEMAD_VERSION, " replica ", replica));
  if (!migrated.ok()) {
    // An unreachable control database is UNAVAILABLE (exit 3), the rest exit 2.
    return annotate(migrated.status());
  }
  std::shared_ptr<spdlog::logger> log = MakeLogger("control", options);
  if (migrated->revisions_run > 0) {
    log->info("control database schema migrated revisions_run={} heads={}", migrated->revisions_run,
              absl::StrJoin(migrated->rows_after, ","));
  }
  ControlPlaneOptions plane;
  plane.replica = replica;
  plane.lease = FromProto(c.control_database().lease());
  plane.retention = FromProto(c.operation_retention());
  plane.max_retained = c.max_retained_operations();
  return ControlPlane::Start(*std::move(store), plane, std::move(log));
}

// The directories of the migration sets with `watch: true`.
std::vector<std::string> WatchedDirectories(const v1::ServerConfig& config) {
  std::vector<std::string> directories;
  for (const v1::MigrationSetConfig& set : config.migration_sets()) {
    if (set.watch()) {
      directories.push_back(set.directory());
    }
  }
  return directories;
}

}  // namespace

std::string HealthServiceName(const std::string& migration_set) {
  return absl::StrCat(v1::Schemad::service_full_name(), "/", migration_set);
}

absl::StatusOr<std::unique_ptr<SchemadServer>> SchemadServer::Start(LoadedConfig config,
                                                                    ServerOptions options) {
  std::unique_ptr<SchemadServer> s(new SchemadServer());
  absl::MutexLock reload_lock(&s->reload_mu_);
  s->config_ = std::move(config);
  s->options_ = options;
  const v1::ServerConfig& c = s->config_.proto;
  s->shutdown_grace_ = FromProto(c.shutdown_grace());
  s->log_ = MakeLogger("server", options);
  const std::string listen = options.listen_override.empty() ? c.listen() : options.listen_override;
  s->listen_ = listen;
  if (!options.listen_override.empty()) {
    RETURN_IF_ERROR(CheckListenExposure(c, listen));
  }
  for (const std::string& warning : s->config_.warnings) {
    s->log_->warn("configuration: {}", LogValue(warning));
  }

  auto snapshot = std::make_shared<ServingSnapshot>();
  if (c.tokens_file().empty()) {
    snapshot->auth = std::make_shared<Authenticator>();
    s->log_->warn(
        "authentication is off: no tokens_file in the configuration, every caller is "
        "admin listen={} loopback={} insecure_allow_unauthenticated={}",
        LogValue(listen), IsLoopbackListen(listen), c.insecure_allow_unauthenticated());
  } else {
    absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromFile(c.tokens_file());
    if (!auth.ok()) {
      return Annotate(auth.status(), "tokens_file");
    }
    snapshot->auth = std::move(auth).value();
    s->log_->info("authentication on tokens={}", snapshot->auth->token_count());
  }

  // Watched before the sets load, so that a change made while they load is
  // reported.
  RETURN_IF_ERROR(Annotate(s->UpdateWatches(WatchedDirectories(c)), "migration_sets[].watch"));
  ASSIGN_OR_RETURN(snapshot->registry,
                   Registry::Create(s->config_, MakeLogger("registry", options)));
  s->state_ = std::make_unique<ServingState>(std::move(snapshot));
  const Registry& registry = *s->state_->registry();
  // Every pooled session is a socket: with the soft limit of 1024 a fleet
  // of ~128 sites at 8 sessions each would run out.
  const OpenFileLimit files = RaiseOpenFileLimit();
  const uint64_t pool_descriptors = static_cast<uint64_t>(c.databases_size()) *
                                    static_cast<uint64_t>(c.pools().max_sessions_per_database());
  if (files.soft != 0 && pool_descriptors + kDescriptorsBesidePools > files.soft) {
    s->log_->warn(
        "open file limit {} (was {}) is below what full pools may use: {} databases x {} "
        "sessions; raise LimitNOFILE / ulimit -n, or lower pools.max_sessions_per_database "
        "(min_idle_sessions: 0 and idle_session_timeout keep quiet sites unconnected)",
        files.soft, files.before, c.databases_size(), c.pools().max_sessions_per_database());
  }
  s->rpc_workers_ = std::make_unique<ThreadPool>("schemad-rpc", c.pools().rpc_workers());
  s->reload_worker_ = std::make_unique<ThreadPool>("schemad-reload", 1);
  if (c.has_metrics()) {
    const ServingState* state = s->state_.get();
    ASSIGN_OR_RETURN(s->metrics_, ServerMetrics::Start(
                                      c.metrics().listen(), [state] { return state->registry(); },
                                      MakeLogger("metrics", options)));
  }
  if (c.has_control_database() && !options.check_only) {
    ASSIGN_OR_RETURN(s->control_, StartControlPlane(s->config_, options));
  }
  OperationRegistryOptions op_options;
  if (s->metrics_ != nullptr) {
    op_options.observe_each.push_back(s->metrics_->OperationObserverFactory());
  }
  if (s->control_ != nullptr) {
    op_options.observe_each.push_back(s->control_->ObserverFactory());
  }
  op_options.workers = c.pools().operation_workers();
  op_options.retention = FromProto(c.operation_retention());
  op_options.max_retained = c.max_retained_operations();
  s->operations_ =
      std::make_unique<OperationRegistry>(op_options, MakeLogger("operations", options));
  if (s->control_ != nullptr) {
    s->control_->Attach(s->operations_.get());
  }

  ServerMetrics* metrics = s->metrics_.get();
  s->drift_ = std::make_unique<DriftChecker>(
      s->config_.dev_dsn, c.has_dev_server() ? c.dev_server().cache_dir() : "",
      [metrics](const std::string& database, int differences) {
        if (metrics != nullptr) metrics->SetDrift(database, differences);
      });
  ServiceDeps deps;
  deps.state = s->state_.get();
  deps.drift = s->drift_.get();
  deps.operations = s->operations_.get();
  deps.control = s->control_.get();
  deps.rpc_workers = s->rpc_workers_.get();
  deps.reload_worker = s->reload_worker_.get();
  deps.log = MakeLogger("rpc", options);
  s->service_ = std::make_unique<SchemadService>(std::move(deps));
  SchemadServer* server = s.get();
  s->service_->SetReloader([server] { return server->Reload(); });

  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials, Credentials(c));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, so a second server on a port in use
  // would start and share it (answering from either at random): off.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  // Deliberately small: the largest request the field limits allow is far
  // below it (request_limits.h); gRPC refuses a larger one by itself.
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  builder.SetOption(std::make_unique<ReflectionOption>(c.reflection()));
  if (s->metrics_ != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(s->metrics_->RpcInterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen,
                                               " (address in use, or not an address of this "
                                               "host?)"));
  }
  s->address_ = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", s->port_);

  grpc::HealthCheckServiceInterface* health = s->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(std::string(v1::Schemad::service_full_name()), true);
  for (const auto& set : registry.migration_sets()) {
    health->SetServingStatus(HealthServiceName(set->name), true);
  }
  health->SetServingStatus(kReadinessServiceName, true);
  if (s->control_ != nullptr) {
    // After health()->Shutdown() (the first step of Shutdown) further
    // statuses are ignored; control_ stops calling before server_ goes.
    s->control_->OnReachability(
        [health](bool reachable) { health->SetServingStatus(kReadinessServiceName, reachable); });
  }
  std::vector<SessionPool*> pools;
  for (const auto& db : registry.databases()) {
    pools.push_back(&db->pool());
  }
  const absl::Duration idle_timeout = FromProto(c.pools().idle_session_timeout());
  if (idle_timeout > absl::ZeroDuration()) {
    s->idle_reaper_ = std::make_unique<IdleSessionReaper>(
        std::move(pools), idle_timeout, c.pools().min_idle_sessions(),
        std::clamp(idle_timeout / 2, absl::Seconds(1), absl::Minutes(1)));
  }
  s->StartPoolWarmer(registry);
  if (s->watcher_ != nullptr) {
    s->StartWatcher();
  }
  if (s->metrics_ != nullptr) {
    s->metrics_->StartRefreshing(FromProto(c.metrics().refresh_interval()),
                                 std::max(1, c.pools().rpc_workers() / 4));
    s->log_->info("metrics served address={}:{} path=/metrics",
                  c.metrics().listen().substr(0, c.metrics().listen().rfind(':')),
                  s->metrics_->port());
  }
  s->log_->info("serving address={} tls={} mtls={} reflection={} databases={} migration_sets={}",
                s->address_, c.has_tls(), c.has_tls() && !c.tls().client_ca_file().empty(),
                c.reflection(), registry.databases().size(), registry.migration_sets().size());
  return s;
}

SchemadServer::~SchemadServer() { Shutdown(absl::ZeroDuration()); }

grpc::HealthCheckServiceInterface* SchemadServer::health() const {
  return server_->GetHealthCheckService();
}

void SchemadServer::StartPoolWarmer(const Registry& registry) {
  const v1::Pools& pools = config_.proto.pools();
  std::vector<PoolWarmer::Target> targets;
  if (pools.min_idle_sessions() > 0) {
    for (const auto& db : registry.databases()) {
      targets.push_back({db->name(), &db->pool()});
    }
  }
  PoolWarmer::Options warm_options;
  warm_options.min_idle = pools.min_idle_sessions();
  // Leave most workers to the RPCs while an unreachable site times out.
  warm_options.max_concurrent_attempts = std::max(1, pools.rpc_workers() / 2);
  pool_warmer_ =
      std::make_unique<PoolWarmer>(std::move(targets), warm_options, *rpc_workers_, log_);
}

absl::Status SchemadServer::UpdateWatches(const std::vector<std::string>& directories) {
  if (watcher_ == nullptr && !directories.empty()) {
    if (options_.check_only) {
      return absl::OkStatus();
    }
    if (options_.config_path.empty()) {
      log_->warn("watch: true has no effect: this server has no configuration file to reload");
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(watcher_, DirectoryWatcher::Create(DirectoryWatcher::Options{},
                                                        MakeLogger("watch", options_)));
  }
  if (watcher_ != nullptr) {
    watcher_->Watch(directories);
  }
  return absl::OkStatus();
}

void SchemadServer::StartWatcher() {
  watcher_->Start([this](const std::vector<std::string>& changed) {
    log_->info("migration set directory changed, reloading directories={}",
               LogValue(absl::StrJoin(changed, ",")));
    (void)Reload();  // logs and counts its outcome itself; a failure keeps the running config
  });
}

void SchemadServer::Shutdown() { Shutdown(shutdown_grace_); }

void SchemadServer::Shutdown(absl::Duration grace) {
  bool already_started = false;
  {
    absl::MutexLock lock(&shutdown_mu_);
    already_started = shutdown_started_;
    shutdown_started_ = true;
  }
  if (already_started) {
    shutdown_done_.WaitForNotification();
    return;
  }
  // First: its thread reloads. A reload running now finishes, later ones
  // are refused.
  std::unique_ptr<DirectoryWatcher> watcher;
  {
    absl::MutexLock reload_lock(&reload_mu_);
    watcher = std::move(watcher_);
  }
  if (watcher != nullptr) {
    watcher->Stop();
  }
  if (server_ == nullptr) {  // Start failed part way
    if (operations_ != nullptr) {
      operations_->Shutdown(absl::ZeroDuration(), kOperationDrain);
    }
    if (control_ != nullptr) {
      control_->Shutdown();
    }
    {
      absl::MutexLock reload_lock(&reload_mu_);
      if (pool_warmer_ != nullptr) {
        pool_warmer_->Stop();
      }
    }
    if (rpc_workers_ != nullptr) {
      rpc_workers_->Stop();
    }
    if (reload_worker_ != nullptr) {
      reload_worker_->Stop();
    }
    if (metrics_ != nullptr) {
      metrics_->Stop();
    }
    if (idle_reaper_ != nullptr) {
      idle_reaper_->Stop();
    }
    shutdown_done_.Notify();
    return;
  }
  log_->info("shutting down grace_ms={} running_operations={}", absl::ToInt64Milliseconds(grace),
             operations_->running());
  health()->Shutdown();  // every service NOT_SERVING
  clean_ = operations_->Shutdown(grace, kOperationDrain);
  if (control_ != nullptr) {
    control_->Shutdown();  // writes what the operations left, ends the lease
  }
  log_->debug("shutdown: operations done, stopping the gRPC server");
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(kCallDrain));
  log_->debug("shutdown: gRPC server stopped");
  {
    absl::MutexLock reload_lock(&reload_mu_);  // a reload running finishes first
    pool_warmer_->Stop();
  }
  rpc_workers_->Stop();
  reload_worker_->Stop();
  if (metrics_ != nullptr) {
    metrics_->Stop();  // its refresher reads through the pools
  }
  if (idle_reaper_ != nullptr) {
    idle_reaper_->Stop();
  }
  state_->registry()->Close();
  log_->info("shut down clean={}", clean_);
  log_->flush();
  shutdown_done_.Notify();
}

absl::StatusOr<v1::ReloadResponse> SchemadServer::Reload() {
  absl::MutexLock reload_lock(&reload_mu_);
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shutdown_started_) {
      return absl::FailedPreconditionError("schemad is shutting down: no reload");
    }
  }
  if (options_.notify) {
    // systemd >= 253 wants the CLOCK_MONOTONIC time with RELOADING=1.
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const int64_t monotonic_usec =
        static_cast<int64_t>(now.tv_sec) * 1000000 + static_cast<int64_t>(now.tv_nsec) / 1000;
    options_.notify(absl::StrCat("RELOADING=1\nMONOTONIC_USEC=", monotonic_usec,
                                 "\nSTATUS=reloading the configuration"));
  }
  absl::StatusOr<v1::ReloadResponse> result = ReloadLocked();
  // What the configuration served says (only the one tried may have
  // added directories).
  (void)UpdateWatches(WatchedDirectories(config_.proto));
  if (metrics_ != nullptr) {
    metrics_->RecordConfigReload(result.ok());
  }
  const int64_t generation = state_->Current()->generation;
  if (result.ok()) {
    log_->info(
        "configuration reloaded generation={} databases={} added={} removed={} "
        "migration_sets_changed={} tokens={}",
        generation, result->databases(), LogValue(absl::StrJoin(result->databases_added(), ",")),
        LogValue(absl::StrJoin(result->databases_removed(), ",")),
        LogValue(absl::StrJoin(result->migration_sets_changed(), ",")), result->tokens());
  } else {
    log_->error("configuration reload failed, still serving generation={} error={}", generation,
                LogValue(result.status().message()));
  }
  if (options_.notify) {
    options_.notify(absl::StrCat("READY=1\nSTATUS=serving on ", address_, " (configuration ",
                                 result.ok() ? "reloaded" : "reload FAILED, previous kept",
                                 ", generation ", generation, ")"));
  }
  return result;
}

namespace {

// Whether two loads of a migration set hold the same revisions, byte for byte.
bool SameRevisions(const MigrationSetEntry& a, const MigrationSetEntry& b) {
  if (a.directory != b.directory || a.graph.size() != b.graph.size()) {
    return false;
  }
  for (int i = 0; i < a.graph.size(); ++i) {
    const int j = b.graph.IndexOf(a.graph.id(i));
    if (j < 0 || a.graph.revision(i).checksum != b.graph.revision(j).checksum ||
        a.graph.revision(i).path != b.graph.revision(j).path) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<v1::ReloadResponse> SchemadServer::ReloadLocked() {
  const std::string& path = options_.config_path;
  if (path.empty()) {
    return absl::FailedPreconditionError(
        "this server was started without a configuration file: nothing to reload");
  }
  // Everything is read and validated before anything changes.
  ASSIGN_OR_RETURN(LoadedConfig next, LoadConfigFile(path));
  RETURN_IF_ERROR(Annotate(CheckReloadable(config_.proto, next.proto), path));
  if (!options_.listen_override.empty()) {
    RETURN_IF_ERROR(Annotate(CheckListenExposure(next.proto, listen_), path));
  }
  // The directories of both configurations are watched while the new one
  // loads: a change made meanwhile is reported whichever is served after.
  std::vector<std::string> watch = WatchedDirectories(config_.proto);
  for (std::string& directory : WatchedDirectories(next.proto)) {
    watch.push_back(std::move(directory));
  }
  const bool had_watcher = watcher_ != nullptr;
  RETURN_IF_ERROR(Annotate(UpdateWatches(watch), absl::StrCat(path, ": migration_sets[].watch")));
  if (!had_watcher && watcher_ != nullptr) {
    StartWatcher();
  }
  auto snapshot = std::make_shared<ServingSnapshot>();
  if (next.proto.tokens_file().empty()) {
    snapshot->auth = std::make_shared<Authenticator>();
  } else {
    absl::StatusOr<std::unique_ptr<Authenticator>> auth =
        Authenticator::FromFile(next.proto.tokens_file());
    if (!auth.ok()) {
      return Annotate(auth.status(), absl::StrCat(path, ": tokens_file"));
    }
    snapshot->auth = std::move(auth).value();
  }
  const std::shared_ptr<const ServingSnapshot> before = state_->Current();
  absl::StatusOr<std::unique_ptr<Registry>> registry =
      Registry::Create(next, MakeLogger("registry", options_), before->registry.get());
  if (!registry.ok()) {
    return Annotate(registry.status(), path);
  }
  snapshot->registry = std::move(registry).value();
  snapshot->generation = before->generation + 1;

  v1::ReloadResponse response;
  response.set_generation(snapshot->generation);
  const Registry& old_registry = *before->registry;
  const Registry& new_registry = *snapshot->registry;
  for (const auto& db : new_registry.databases()) {
    if (!old_registry.GetDatabase(db->name()).ok()) {
      response.add_databases_added(db->name());
    }
  }
  for (const auto& db : old_registry.databases()) {
    if (!new_registry.GetDatabase(db->name()).ok()) {
      response.add_databases_removed(db->name());
    }
  }
  for (const auto& set : new_registry.migration_sets()) {
    absl::StatusOr<const MigrationSetEntry*> old_set = old_registry.GetMigrationSet(set->name);
    if (!old_set.ok() || !SameRevisions(**old_set, *set)) {
      response.add_migration_sets_changed(set->name);
    }
  }
  response.set_databases(static_cast<int>(new_registry.databases().size()));
  response.set_migration_sets(static_cast<int>(new_registry.migration_sets().size()));
  response.set_tokens(snapshot->auth->token_count());
  for (const std::string& warning : next.warnings) {
    log_->warn("configuration: {}", LogValue(warning));
    response.add_warnings(warning);
  }

  // The swap. Calls that already hold `before` keep it (and its pools: a
  // removed database's connections close when its last call is done).
  pool_warmer_->Stop();  // it points into `before`'s pools
  state_->Replace(snapshot);
  config_ = std::move(next);
  std::vector<SessionPool*> pools;
  for (const auto& db : new_registry.databases()) {
    pools.push_back(&db->pool());
  }
  if (idle_reaper_ != nullptr) {
    idle_reaper_->SetPools(std::move(pools));
  }
  StartPoolWarmer(new_registry);
  if (metrics_ != nullptr) {
    metrics_->OnReload(old_registry, new_registry);
  }
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  for (const auto& set : old_registry.migration_sets()) {
    if (!new_registry.GetMigrationSet(set->name).ok()) {
      health->SetServingStatus(HealthServiceName(set->name), false);
    }
  }
  for (const auto& set : new_registry.migration_sets()) {
    health->SetServingStatus(HealthServiceName(set->name), true);
  }
  return response;
}

void SchemadServer::CancelAllOperations() {
  for (const auto& op : operations_->List("", /*running_only=*/true, 0)) {
    (void)op->RequestCancel("schemad is stopping now");
  }
}

void SchemadServer::Wait() { shutdown_done_.WaitForNotification(); }

bool SchemadServer::clean_shutdown() const { return clean_; }

}  // namespace schemad::server
