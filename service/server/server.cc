#include "service/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"
#include "service/server/proto_time.h"
#include "service/server/request_limits.h"
#include "service/server/resource_limits.h"

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

}  // namespace

std::string HealthServiceName(const std::string& migration_set) {
  return absl::StrCat(v1::Schemad::service_full_name(), "/", migration_set);
}

absl::StatusOr<std::unique_ptr<SchemadServer>> SchemadServer::Start(LoadedConfig config,
                                                                    ServerOptions options) {
  std::unique_ptr<SchemadServer> s(new SchemadServer());
  s->config_ = std::move(config);
  const v1::ServerConfig& c = s->config_.proto;
  s->log_ = MakeLogger("server", options);
  const std::string listen = options.listen_override.empty() ? c.listen() : options.listen_override;
  if (!options.listen_override.empty()) {
    RETURN_IF_ERROR(CheckListenExposure(c, listen));
  }
  for (const std::string& warning : s->config_.warnings) {
    s->log_->warn("configuration: {}", LogValue(warning));
  }

  if (c.tokens_file().empty()) {
    s->auth_ = std::make_unique<Authenticator>();
    s->log_->warn(
        "authentication is off: no tokens_file in the configuration, every caller is "
        "admin listen={} loopback={} insecure_allow_unauthenticated={}",
        LogValue(listen), IsLoopbackListen(listen), c.insecure_allow_unauthenticated());
  } else {
    absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromFile(c.tokens_file());
    if (!auth.ok()) {
      return Annotate(auth.status(), "tokens_file");
    }
    s->auth_ = std::move(auth).value();
    s->log_->info("authentication on tokens={}", s->auth_->token_count());
  }

  ASSIGN_OR_RETURN(s->registry_, Registry::Create(s->config_, MakeLogger("registry", options)));
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
  if (c.has_metrics()) {
    ASSIGN_OR_RETURN(s->metrics_, ServerMetrics::Start(c.metrics().listen(), *s->registry_,
                                                       MakeLogger("metrics", options)));
  }
  OperationRegistryOptions op_options;
  if (s->metrics_ != nullptr) {
    op_options.observe_each = s->metrics_->OperationObserverFactory();
  }
  op_options.workers = c.pools().operation_workers();
  op_options.retention = FromProto(c.operation_retention());
  op_options.max_retained = c.max_retained_operations();
  s->operations_ =
      std::make_unique<OperationRegistry>(op_options, MakeLogger("operations", options));

  ServiceDeps deps;
  deps.registry = s->registry_.get();
  deps.operations = s->operations_.get();
  deps.auth = s->auth_.get();
  deps.rpc_workers = s->rpc_workers_.get();
  deps.log = MakeLogger("rpc", options);
  s->service_ = std::make_unique<SchemadService>(std::move(deps));

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
  for (const auto& set : s->registry_->migration_sets()) {
    health->SetServingStatus(HealthServiceName(set->name), true);
  }
  std::vector<PoolWarmer::Target> warm_targets;
  std::vector<SessionPool*> pools;
  for (const auto& db : s->registry_->databases()) {
    if (c.pools().min_idle_sessions() > 0) {
      warm_targets.push_back({db->name(), &db->pool()});
    }
    pools.push_back(&db->pool());
  }
  const absl::Duration idle_timeout = FromProto(c.pools().idle_session_timeout());
  if (idle_timeout > absl::ZeroDuration()) {
    s->idle_reaper_ = std::make_unique<IdleSessionReaper>(
        std::move(pools), idle_timeout, c.pools().min_idle_sessions(),
        std::clamp(idle_timeout / 2, absl::Seconds(1), absl::Minutes(1)));
  }
  PoolWarmer::Options warm_options;
  warm_options.min_idle = c.pools().min_idle_sessions();
  // Leave most workers to the RPCs while an unreachable site times out.
  warm_options.max_concurrent_attempts = std::max(1, c.pools().rpc_workers() / 2);
  s->pool_warmer_ = std::make_unique<PoolWarmer>(std::move(warm_targets), warm_options,
                                                 *s->rpc_workers_, s->log_);
  if (s->metrics_ != nullptr) {
    s->metrics_->StartRefreshing(FromProto(c.metrics().refresh_interval()),
                                 std::max(1, c.pools().rpc_workers() / 4));
    s->log_->info("metrics served address={}:{} path=/metrics",
                  c.metrics().listen().substr(0, c.metrics().listen().rfind(':')),
                  s->metrics_->port());
  }
  s->log_->info("serving address={} tls={} mtls={} reflection={} databases={} migration_sets={}",
                s->address_, c.has_tls(), c.has_tls() && !c.tls().client_ca_file().empty(),
                c.reflection(), s->registry_->databases().size(),
                s->registry_->migration_sets().size());
  return s;
}

SchemadServer::~SchemadServer() { Shutdown(absl::ZeroDuration()); }

grpc::HealthCheckServiceInterface* SchemadServer::health() const {
  return server_->GetHealthCheckService();
}

void SchemadServer::Shutdown() { Shutdown(FromProto(config_.proto.shutdown_grace())); }

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
  if (server_ == nullptr) {  // Start failed part way
    if (operations_ != nullptr) {
      operations_->Shutdown(absl::ZeroDuration(), kOperationDrain);
    }
    if (pool_warmer_ != nullptr) {
      pool_warmer_->Stop();
    }
    if (rpc_workers_ != nullptr) {
      rpc_workers_->Stop();
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
  log_->debug("shutdown: operations done, stopping the gRPC server");
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(kCallDrain));
  log_->debug("shutdown: gRPC server stopped");
  pool_warmer_->Stop();
  rpc_workers_->Stop();
  if (metrics_ != nullptr) {
    metrics_->Stop();  // its refresher reads through the pools
  }
  if (idle_reaper_ != nullptr) {
    idle_reaper_->Stop();
  }
  registry_->Close();
  log_->info("shut down clean={}", clean_);
  log_->flush();
  shutdown_done_.Notify();
}

void SchemadServer::CancelAllOperations() {
  for (const auto& op : operations_->List("", /*running_only=*/true, 0)) {
    (void)op->RequestCancel("schemad is stopping now");
  }
}

void SchemadServer::Wait() { shutdown_done_.WaitForNotification(); }

bool SchemadServer::clean_shutdown() const { return clean_; }

}  // namespace schemad::server
