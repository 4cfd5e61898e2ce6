#include "service/server/metrics.h"

#include <google/protobuf/descriptor.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <exception>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "service/common/status_macros.h"
#include "service/engine/executor.h"
#include "service/server/log_format.h"
#include "service/server/proto_time.h"
#include "service/server/thread_pool.h"

namespace schemad::server {
namespace {

// schemad_fleet_sites's states; all but the first two are outcomes.
constexpr const char* kFleetSiteStates[] = {"queued", "running",   "succeeded",
                                            "failed", "cancelled", "skipped"};
bool IsFleetOutcome(absl::string_view state) { return state != "queued" && state != "running"; }

// A refresh waits this long for a pooled session (all of them busy running
// operations means reachable; the gauges keep their values).
constexpr absl::Duration kRefreshAcquireWait = absl::Seconds(5);

const prometheus::Histogram::BucketBoundaries& RpcBuckets() {
  static const auto* kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  return *kBuckets;
}

const prometheus::Histogram::BucketBoundaries& OperationBuckets() {
  static const auto* kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600};
  return *kBuckets;
}

const prometheus::Histogram::BucketBoundaries& LockWaitBuckets() {
  static const auto* kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900};
  return *kBuckets;
}

// grpc::StatusCode as gRPC's documentation spells it.
std::string GrpcCodeName(int code) {
  static constexpr std::array<const char*, 17> kNames = {"OK",
                                                         "CANCELLED",
                                                         "UNKNOWN",
                                                         "INVALID_ARGUMENT",
                                                         "DEADLINE_EXCEEDED",
                                                         "NOT_FOUND",
                                                         "ALREADY_EXISTS",
                                                         "PERMISSION_DENIED",
                                                         "RESOURCE_EXHAUSTED",
                                                         "FAILED_PRECONDITION",
                                                         "ABORTED",
                                                         "OUT_OF_RANGE",
                                                         "UNIMPLEMENTED",
                                                         "INTERNAL",
                                                         "UNAVAILABLE",
                                                         "DATA_LOSS",
                                                         "UNAUTHENTICATED"};
  if (code < 0 || code >= static_cast<int>(kNames.size())) {
    return "UNKNOWN";
  }
  return kNames[static_cast<size_t>(code)];
}

// "upgrade" for OPERATION_KIND_UPGRADE.
std::string KindLabel(v1::OperationKind kind) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::OperationKind_Name(kind), "OPERATION_KIND_"));
}

// The methods schemad serves, as gRPC names them ("/schemad.v1.Schemad/Upgrade").
absl::flat_hash_set<std::string> ServedMethods() {
  absl::flat_hash_set<std::string> methods = {
      "/grpc.health.v1.Health/Check",
      "/grpc.health.v1.Health/Watch",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  };
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName("schemad.v1.Schemad");
  for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
    methods.insert(absl::StrCat("/", service->full_name(), "/", service->method(i)->name()));
  }
  return methods;
}

// schemad_sessions, read from the pools at each scrape.
class SessionsCollectable final : public prometheus::Collectable {
 public:
  explicit SessionsCollectable(std::function<std::shared_ptr<const Registry>()> registry)
      : registry_(std::move(registry)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily family;
    family.name = "schemad_sessions";
    family.help = "Connections schemad holds to each database: idle in the pool or in use";
    family.type = prometheus::MetricType::Gauge;
    const std::shared_ptr<const Registry> registry = registry_();
    for (const auto& db : registry->databases()) {
      const int open = db->pool().open();
      const int idle = db->pool().idle();
      for (const auto& [state, value] : {std::pair<const char*, int>{"idle", idle},
                                         std::pair<const char*, int>{"in_use", open - idle}}) {
        prometheus::ClientMetric metric;
        metric.label = {{"database", db->name()}, {"state", state}};
        metric.gauge.value = value;
        family.metric.push_back(std::move(metric));
      }
    }
    return {std::move(family)};
  }

 private:
  const std::function<std::shared_ptr<const Registry>()> registry_;
};

}  // namespace

std::string OperationOutcomeLabel(const absl::Status& status) {
  if (status.ok()) {
    return "success";
  }
  return status.code() == absl::StatusCode::kCancelled ? "cancelled" : "failed";
}

class ServerMetrics::Impl {
 public:
  Impl(std::function<std::shared_ptr<const Registry>()> registry,
       std::shared_ptr<spdlog::logger> log)
      : registry_(std::move(registry)),
        log_(std::move(log)),
        served_methods_(ServedMethods()),
        prom_(std::make_shared<prometheus::Registry>()),
        sessions_(std::make_shared<SessionsCollectable>(registry_)),
        pending_(prometheus::BuildGauge()
                     .Name("schemad_database_pending_revisions")
                     .Help("Revisions `upgrade heads` would apply to the database")
                     .Register(*prom_)),
        needs_attention_(prometheus::BuildGauge()
                             .Name("schemad_database_needs_attention")
                             .Help("1 when the database carries a needs-attention mark")
                             .Register(*prom_)),
        drift_(prometheus::BuildGauge()
                   .Name("schemad_database_drift")
                   .Help("Objects of the database's schema that differ from what its revisions "
                         "build, at its last drift check (0: none); absent until checked")
                   .Register(*prom_)),
        reachable_(prometheus::BuildGauge()
                       .Name("schemad_database_reachable")
                       .Help("1 when the last refresh could read the database")
                       .Register(*prom_)),
        refreshed_(prometheus::BuildGauge()
                       .Name("schemad_database_refreshed_timestamp_seconds")
                       .Help("When the database's gauges were last read (Unix time)")
                       .Register(*prom_)),
        operations_total_(prometheus::BuildCounter()
                              .Name("schemad_operations_total")
                              .Help("Operations finished, by kind and outcome")
                              .Register(*prom_)),
        operations_running_(prometheus::BuildGauge()
                                .Name("schemad_operations_running")
                                .Help("Operations accepted and not finished, by kind")
                                .Register(*prom_)),
        operation_duration_(prometheus::BuildHistogram()
                                .Name("schemad_operation_duration_seconds")
                                .Help("From accepted to finished, queueing included, by kind")
                                .Register(*prom_)),
        lock_wait_(prometheus::BuildHistogram()
                       .Name("schemad_lock_wait_seconds")
                       .Help("Wait for a database's migration lock before an operation ran")
                       .Register(*prom_)
                       .Add({}, LockWaitBuckets())),
        rpc_duration_(prometheus::BuildHistogram()
                          .Name("schemad_rpc_duration_seconds")
                          .Help("gRPC calls served, by method and status code")
                          .Register(*prom_)),
        config_reload_(prometheus::BuildCounter()
                           .Name("schemad_config_reload_total")
                           .Help("Configuration reloads (SIGHUP, Reload), by outcome")
                           .Register(*prom_)),
        fleet_sites_(prometheus::BuildGauge()
                         .Name("schemad_fleet_sites")
                         .Help("Sites of the fleet runs running on this replica, by state "
                               "(queued, running, succeeded, failed, cancelled, skipped)")
                         .Register(*prom_)),
        fleet_sites_done_(prometheus::BuildCounter()
                              .Name("schemad_fleet_sites_done_total")
                              .Help("Sites that fleet runs on this replica finished with, by "
                                    "outcome (succeeded, failed, cancelled, skipped)")
                              .Register(*prom_)) {
    for (const char* outcome : {"success", "failure"}) {
      config_reload_.Add({{"outcome", outcome}});
    }
    for (const char* state : kFleetSiteStates) {
      fleet_sites_.Add({{"state", state}});
      if (IsFleetOutcome(state)) {
        fleet_sites_done_.Add({{"outcome", state}});
      }
    }
    for (const auto& db : registry_()->databases()) {
      AddDatabase(*db);
    }
  }

  void AddDatabase(const DatabaseEntry& db) {
    pending_.Add({{"database", db.name()}, {"migration_set", db.set().name}});
    needs_attention_.Add({{"database", db.name()}});
    reachable_.Add({{"database", db.name()}});
    refreshed_.Add({{"database", db.name()}});
  }

  void OnReload(const Registry& before, const Registry& after) {
    for (const auto& db : before.databases()) {
      absl::StatusOr<DatabaseEntry*> now = after.GetDatabase(db->name());
      if (now.ok() && (*now)->set().name == db->set().name) {
        continue;
      }
      const prometheus::Labels pending_labels = {{"database", db->name()},
                                                 {"migration_set", db->set().name}};
      pending_.Remove(&pending_.Add(pending_labels));
      if (!now.ok()) {
        for (prometheus::Family<prometheus::Gauge>* family :
             {&needs_attention_, &reachable_, &refreshed_, &drift_}) {
          family->Remove(&family->Add({{"database", db->name()}}));
        }
      }
    }
    for (const auto& db : after.databases()) {
      AddDatabase(*db);  // Add returns the existing series when there is one
    }
  }

  // A fleet site of a running run moved from state `from` ("" when it was
  // not counted yet) to `to` ("" when the run ended and forgets it).
  void MoveFleetSite(absl::string_view from, absl::string_view to) {
    if (!from.empty()) {
      fleet_sites_.Add({{"state", std::string(from)}}).Decrement();
    }
    if (!to.empty()) {
      fleet_sites_.Add({{"state", std::string(to)}}).Increment();
      if (IsFleetOutcome(to)) {
        fleet_sites_done_.Add({{"outcome", std::string(to)}}).Increment();
      }
    }
  }

  void RecordConfigReload(bool success) {
    config_reload_.Add({{"outcome", success ? "success" : "failure"}}).Increment();
  }

  absl::Status Listen(const std::string& listen) {
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2);
    } catch (const std::exception&) {
      // civetweb's message names its own options; ours names the key.
      return absl::UnavailableError(
          absl::StrCat("metrics.listen: cannot listen on ", listen,
                       " (address in use, or not an address of this host?)"));
    }
    exposer_->RegisterCollectable(prom_);
    exposer_->RegisterCollectable(sessions_);
    return absl::OkStatus();
  }

  int port() const {
    const std::vector<int> ports = exposer_->GetListeningPorts();
    return ports.empty() ? 0 : ports.front();
  }

  void RecordRpc(absl::string_view method, int code, absl::Duration elapsed) {
    const std::string label = served_methods_.contains(method) ? std::string(method) : "other";
    rpc_duration_.Add({{"method", label}, {"code", GrpcCodeName(code)}}, RpcBuckets())
        .Observe(absl::ToDoubleSeconds(elapsed));
  }

  void RecordOperation(v1::OperationKind kind, absl::string_view outcome, absl::Duration elapsed) {
    const std::string kind_label = KindLabel(kind);
    operations_total_.Add({{"kind", kind_label}, {"outcome", std::string(outcome)}}).Increment();
    operation_duration_.Add({{"kind", kind_label}}, OperationBuckets())
        .Observe(absl::ToDoubleSeconds(elapsed));
  }

  prometheus::Gauge& Running(v1::OperationKind kind) {
    return operations_running_.Add({{"kind", KindLabel(kind)}});
  }

  void RecordLockWait(absl::Duration waited) { lock_wait_.Observe(absl::ToDoubleSeconds(waited)); }

  void SetDatabase(const DatabaseEntry& db, const DatabaseGauges& gauges) {
    if (!registry_()->GetDatabase(db.name()).ok()) {
      return;  // removed by a reload while this pass ran: no series again
    }
    reachable_.Add({{"database", db.name()}}).Set(gauges.reachable ? 1 : 0);
    refreshed_.Add({{"database", db.name()}})
        .Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    if (gauges.reachable) {
      pending_.Add({{"database", db.name()}, {"migration_set", db.set().name}}).Set(gauges.pending);
      needs_attention_.Add({{"database", db.name()}}).Set(gauges.needs_attention ? 1 : 0);
    }
  }

  void SetDrift(const std::string& database, int differences) {
    if (!registry_()->GetDatabase(database).ok()) {
      return;  // removed by a reload meanwhile
    }
    drift_.Add({{"database", database}}).Set(differences);
  }

  void RefreshOne(const DatabaseEntry& db) {
    absl::StatusOr<SessionPool::Lease> lease = db.pool().Acquire(absl::Now() + kRefreshAcquireWait);
    if (!lease.ok()) {
      if (lease.status().code() != absl::StatusCode::kDeadlineExceeded) {
        SetDatabase(db, DatabaseGauges{});
      }  // else every session is busy: reachable, the gauges keep their values
      return;
    }
    engine::Executor executor(db.set().graph, db.database(), db.ExecutorOptionsFor(""));
    absl::StatusOr<engine::DatabaseStatus> status = executor.Status(**lease);
    lease->Finish(status.status());
    if (!status.ok()) {
      log_->debug("metrics: cannot read database={} error={}", db.name(),
                  LogValue(status.status().message()));
      if (status.status().code() == absl::StatusCode::kUnavailable) {
        db.pool().DropIdle();
      }
      SetDatabase(db, DatabaseGauges{});
      return;
    }
    SetDatabase(db, DatabaseGauges{true, status->pending, status->needs_attention.has_value()});
  }

  void RefreshAll() {
    // This pass reads the registry served when it began (a reload meanwhile
    // takes effect at the next pass).
    const std::shared_ptr<const Registry> registry = registry_();
    absl::BlockingCounter done(static_cast<int>(registry->databases().size()));
    for (const auto& db : registry->databases()) {
      const DatabaseEntry* entry = db.get();
      auto task = [this, entry, &done] {
        if (!stopping()) {
          RefreshOne(*entry);
        }
        done.DecrementCount();
      };
      if (refresh_workers_ == nullptr || !refresh_workers_->Submit(task)) {
        task();
      }
    }
    done.Wait();
  }

  void StartRefreshing(absl::Duration interval, int parallelism) {
    refresh_workers_ = std::make_unique<ThreadPool>("schemad-metrics", parallelism);
    refresher_ = std::thread([this, interval] {
      for (;;) {
        RefreshAll();
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval)) {
          return;
        }
      }
    });
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) {
        return;
      }
      stopping_ = true;
      stopped_ = true;
    }
    if (refresher_.joinable()) {
      refresher_.join();
    }
    if (refresh_workers_ != nullptr) {
      refresh_workers_->Stop();
    }
    exposer_.reset();
  }

 private:
  bool stopping() const {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  const std::function<std::shared_ptr<const Registry>()> registry_;
  std::shared_ptr<spdlog::logger> log_;
  const absl::flat_hash_set<std::string> served_methods_;
  std::shared_ptr<prometheus::Registry> prom_;
  std::shared_ptr<SessionsCollectable> sessions_;
  prometheus::Family<prometheus::Gauge>& pending_;
  prometheus::Family<prometheus::Gauge>& needs_attention_;
  prometheus::Family<prometheus::Gauge>& drift_;
  prometheus::Family<prometheus::Gauge>& reachable_;
  prometheus::Family<prometheus::Gauge>& refreshed_;
  prometheus::Family<prometheus::Counter>& operations_total_;
  prometheus::Family<prometheus::Gauge>& operations_running_;
  prometheus::Family<prometheus::Histogram>& operation_duration_;
  prometheus::Histogram& lock_wait_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  prometheus::Family<prometheus::Counter>& config_reload_;
  prometheus::Family<prometheus::Gauge>& fleet_sites_;
  prometheus::Family<prometheus::Counter>& fleet_sites_done_;
  std::unique_ptr<prometheus::Exposer> exposer_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<ThreadPool> refresh_workers_;  // set by StartRefreshing, before the thread
  std::thread refresher_;
};

namespace {

// One per operation: running while it runs, then its outcome and duration.
class OperationMetricsObserver final : public OperationObserver {
 public:
  OperationMetricsObserver(ServerMetrics* metrics, prometheus::Gauge& running,
                           v1::OperationKind kind)
      : metrics_(metrics), running_(running), kind_(kind), accepted_(absl::Now()) {
    running_.Increment();
  }

  void OnEvent(const v1::OperationEvent& event) override {
    if (event.has_lock_acquired()) {
      metrics_->RecordLockWait(FromProto(event.lock_acquired().waited()));
    }
    if (event.has_fleet()) {
      OnFleetEvent(event.fleet());
    }
  }

  void OnDone(const absl::Status& status, const v1::OperationResult&) override {
    running_.Decrement();
    metrics_->RecordOperation(kind_, OperationOutcomeLabel(status), absl::Now() - accepted_);
    // The run's sites leave schemad_fleet_sites with it.
    for (const auto& [site, state] : site_states_) {
      metrics_->RecordFleetSite(state, "");
    }
    site_states_.clear();
  }

 private:
  // A site's state from the fleet events: queued, then running, then how it
  // ended (a site skipped before it started goes straight from queued).
  void OnFleetEvent(const v1::FleetEvent& fleet) {
    const char* to = nullptr;
    switch (fleet.kind()) {
      case v1::FleetEvent::KIND_SITE_QUEUED:
        to = "queued";
        break;
      case v1::FleetEvent::KIND_SITE_STARTED:
        to = "running";
        break;
      case v1::FleetEvent::KIND_SITE_FINISHED:
        to = "succeeded";
        break;
      case v1::FleetEvent::KIND_SITE_FAILED:
        to = fleet.result().outcome() == v1::FleetSiteResult::OUTCOME_CANCELLED ? "cancelled"
                                                                                : "failed";
        break;
      case v1::FleetEvent::KIND_SITE_SKIPPED:
        to = "skipped";
        break;
      default:
        return;
    }
    std::string& state = site_states_[fleet.site()];
    metrics_->RecordFleetSite(state, to);
    state = to;
  }

  ServerMetrics* metrics_;
  prometheus::Gauge& running_;
  const v1::OperationKind kind_;
  const absl::Time accepted_;
  // Fleet runs: each site's state as last counted in schemad_fleet_sites.
  // Events and OnDone come one at a time (OperationObserver).
  std::map<std::string, std::string> site_states_;
};

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(ServerMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), started_(absl::Now()) {}

  // A call that ends without sending a status (the client went away) is
  // recorded as CANCELLED.
  ~RpcMetricsInterceptor() override { metrics_->RecordRpc(method_, code_, absl::Now() - started_); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      code_ = methods->GetSendStatus().error_code();
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* metrics_;
  const std::string method_;
  const absl::Time started_;
  int code_ = grpc::StatusCode::CANCELLED;
};

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcMetricsInterceptor(metrics_, info->method() == nullptr ? "" : info->method());
  }

 private:
  ServerMetrics* metrics_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Start(
    const std::string& listen, std::function<std::shared_ptr<const Registry>()> registry,
    std::shared_ptr<spdlog::logger> log) {
  auto impl = std::make_unique<Impl>(std::move(registry), std::move(log));
  RETURN_IF_ERROR(impl->Listen(listen));
  return std::unique_ptr<ServerMetrics>(new ServerMetrics(std::move(impl)));
}

ServerMetrics::ServerMetrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ServerMetrics::~ServerMetrics() { Stop(); }

int ServerMetrics::port() const { return impl_->port(); }

void ServerMetrics::RecordRpc(absl::string_view method, int grpc_code, absl::Duration elapsed) {
  impl_->RecordRpc(method, grpc_code, elapsed);
}

void ServerMetrics::RecordOperation(v1::OperationKind kind, absl::string_view outcome,
                                    absl::Duration elapsed) {
  impl_->RecordOperation(kind, outcome, elapsed);
}

void ServerMetrics::RecordLockWait(absl::Duration waited) { impl_->RecordLockWait(waited); }

void ServerMetrics::SetDatabase(const DatabaseEntry& db, const DatabaseGauges& gauges) {
  impl_->SetDatabase(db, gauges);
}

void ServerMetrics::SetDrift(const std::string& database, int differences) {
  impl_->SetDrift(database, differences);
}

void ServerMetrics::OnReload(const Registry& before, const Registry& after) {
  impl_->OnReload(before, after);
}

void ServerMetrics::RecordConfigReload(bool success) { impl_->RecordConfigReload(success); }

void ServerMetrics::RecordFleetSite(absl::string_view from, absl::string_view to) {
  impl_->MoveFleetSite(from, to);
}

std::function<std::shared_ptr<OperationObserver>(const Operation&)>
ServerMetrics::OperationObserverFactory() {
  return [this](const Operation& op) -> std::shared_ptr<OperationObserver> {
    return std::make_shared<OperationMetricsObserver>(this, impl_->Running(op.spec().kind),
                                                      op.spec().kind);
  };
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ServerMetrics::RpcInterceptorFactory() {
  return std::make_unique<RpcMetricsInterceptorFactory>(this);
}

void ServerMetrics::StartRefreshing(absl::Duration interval, int parallelism) {
  impl_->StartRefreshing(interval, std::max(1, parallelism));
}

void ServerMetrics::RefreshAll() { impl_->RefreshAll(); }

void ServerMetrics::Stop() { impl_->Stop(); }

}  // namespace schemad::server
