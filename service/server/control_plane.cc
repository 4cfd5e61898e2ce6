#include "service/server/control_plane.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "service/common/status_macros.h"
#include "service/server/log_format.h"
#include "service/server/proto_time.h"
#include "service/server/status_conversion.h"
#include "service/server/wire_safety.h"

namespace schemad::server {
namespace {

// Kept events a follower reads per poll.
constexpr int kEventsPerRead = 1000;
// A followed operation the control database does not have after this long
// is unknown (its replica writes it within milliseconds of accepting it).
constexpr absl::Duration kUnknownAfter = absl::Seconds(2);
// A mirror nobody subscribed to after this long is dropped.
constexpr absl::Duration kUnwatchedAfter = absl::Seconds(10);
constexpr absl::Duration kWriteRetry = absl::Seconds(1);
constexpr absl::Duration kPruneEvery = absl::Minutes(1);
constexpr absl::Duration kShutdownFlush = absl::Seconds(5);
// ListPage's tokens: "c" + created (Unix microseconds) + "." + id.
constexpr absl::string_view kPageTokenPrefix = "c";

v1::OperationState StateFromName(absl::string_view name) {
  for (v1::OperationState state :
       {v1::OPERATION_STATE_QUEUED, v1::OPERATION_STATE_RUNNING, v1::OPERATION_STATE_SUCCEEDED,
        v1::OPERATION_STATE_FAILED, v1::OPERATION_STATE_CANCELLED, v1::OPERATION_STATE_ABANDONED}) {
    if (name == OperationStateName(state)) return state;
  }
  return v1::OPERATION_STATE_UNSPECIFIED;
}

v1::OperationKind KindFromName(absl::string_view name) {
  for (v1::OperationKind kind :
       {v1::OPERATION_KIND_ENSURE_HEAD, v1::OPERATION_KIND_UPGRADE, v1::OPERATION_KIND_DOWNGRADE,
        v1::OPERATION_KIND_MERGE, v1::OPERATION_KIND_STAMP, v1::OPERATION_KIND_RESOLVE,
        v1::OPERATION_KIND_FLEET}) {
    if (name == OperationKindName(kind)) return kind;
  }
  return v1::OPERATION_KIND_UNSPECIFIED;
}

// The kind column of an event: its oneof case's name ("accepted", "fleet", ...).
std::string EventKind(const v1::OperationEvent& event) {
  const google::protobuf::FieldDescriptor* field = event.GetReflection()->GetOneofFieldDescriptor(
      event, v1::OperationEvent::descriptor()->FindOneofByName("event"));
  return field == nullptr ? "unknown" : field->name();
}

// The status a finished stored operation ends with.
absl::Status StatusOf(const store::ControlOperation& op) {
  if (op.state == "succeeded") return absl::OkStatus();
  const absl::StatusCode code = op.error_code != 0 ? static_cast<absl::StatusCode>(op.error_code)
                                                   : absl::StatusCode::kUnknown;
  return absl::Status(code, op.error.empty() ? absl::StrCat("operation ", op.state) : op.error);
}

std::string RandomIncarnation() {
  std::random_device random;
  return absl::StrFormat("%08x%08x", random(), random());
}

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "";
  return host;
}

}  // namespace

// Writes one operation through: queues its kept events (the bound an
// operation keeps in memory), fleet site results and the final state.
class ControlPlane::Observer final : public OperationObserver {
 public:
  Observer(ControlPlane* control, std::shared_ptr<const Operation> op)
      : control_(control), op_(std::move(op)) {}
  // OperationObserver (called with the operation's lock held: only queue).
  void OnEvent(const v1::OperationEvent& event) override {
    if (IsDetailEvent(event)) {
      if (kept_detail_ >= control_->options_.max_kept_detail_events) return;
      ++kept_detail_;
    }
    const v1::FleetSiteResult* site = nullptr;
    if (event.has_fleet() && event.fleet().has_result()) {
      switch (event.fleet().kind()) {
        case v1::FleetEvent::KIND_SITE_FINISHED:
        case v1::FleetEvent::KIND_SITE_FAILED:
        case v1::FleetEvent::KIND_SITE_SKIPPED:
          site = &event.fleet().result();
          break;
        default:
          break;
      }
    }
    control_->Enqueue(op_, &event, site);
  }
  void OnDone(const absl::Status&, const v1::OperationResult&) override {
    control_->Enqueue(op_, nullptr, nullptr);
  }

 private:
  ControlPlane* control_;
  std::shared_ptr<const Operation> op_;
  int kept_detail_ = 0;
};

ControlPlane::ControlPlane(std::unique_ptr<store::ControlStore> store, ControlPlaneOptions options,
                           std::shared_ptr<spdlog::logger> log)
    : store_(std::move(store)), options_(std::move(options)), log_(std::move(log)) {
  self_.name = options_.replica;
  self_.incarnation = RandomIncarnation();
  self_.host = HostName();
  self_.pid = static_cast<int>(getpid());
}

absl::StatusOr<std::unique_ptr<ControlPlane>> ControlPlane::Start(
    std::unique_ptr<store::ControlStore> store, ControlPlaneOptions options,
    std::shared_ptr<spdlog::logger> log) {
  std::unique_ptr<ControlPlane> control(
      new ControlPlane(std::move(store), std::move(options), std::move(log)));
  ControlPlane& c = *control;
  absl::StatusOr<std::vector<store::ControlOperation>> abandoned = c.store_->RegisterReplica(
      c.self_, c.options_.lease,
      absl::StrCat("abandoned: replica ", c.self_.name,
                   " restarted (its previous process stopped without finishing it)"));
  if (!abandoned.ok()) return abandoned.status();
  for (const store::ControlOperation& op : *abandoned) {
    c.log_->warn("operation abandoned op={} db={} kind={} replica={} error={}", op.id,
                 LogValue(op.database), op.kind, LogValue(op.replica), LogValue(op.error));
  }
  c.log_->info("control database replica={} database={} lease_ms={} abandoned_at_start={}",
               LogValue(c.self_.name), LogValue(c.store_->DisplayName()),
               absl::ToInt64Milliseconds(c.options_.lease), abandoned->size());
  c.writer_ = std::thread([&c] { c.WriterLoop(); });
  c.maintenance_ = std::thread([&c] { c.MaintenanceLoop(); });
  return control;
}

ControlPlane::~ControlPlane() { Shutdown(); }

std::function<std::shared_ptr<OperationObserver>(const Operation&)>
ControlPlane::ObserverFactory() {
  return [this](const Operation& op) -> std::shared_ptr<OperationObserver> {
    return std::make_shared<Observer>(this, op.shared_from_this());
  };
}

void ControlPlane::Attach(OperationRegistry* operations) {
  absl::MutexLock lock(&mu_);
  operations_ = operations;
}

void ControlPlane::Enqueue(const std::shared_ptr<const Operation>& op,
                           const v1::OperationEvent* event, const v1::FleetSiteResult* site,
                           bool over_mark) {
  absl::MutexLock lock(&mu_);
  Pending& pending = pending_[op->id()];
  pending.op = op;
  pending.over_mark = pending.over_mark || over_mark;
  if (event != nullptr) pending.events.push_back(*event);
  if (site != nullptr) pending.sites.push_back(*site);
  pending.ticket = ++enqueued_;
}

store::ControlOperationWrite ControlPlane::MakeWrite(const Pending& pending) {
  const v1::OperationInfo info = pending.op->Info();
  store::ControlOperationWrite write;
  store::ControlOperation& op = write.operation;
  op.id = info.operation_id();
  op.kind = OperationKindName(info.kind());
  op.database = info.database();
  op.target = info.target();
  op.who = info.who();
  op.replica = self_.name;
  op.state = OperationStateName(info.state());
  op.created = FromProto(info.created());
  op.started = info.has_started() ? FromProto(info.started()) : absl::InfinitePast();
  op.finished = info.has_finished() ? FromProto(info.finished()) : absl::InfinitePast();
  op.cancel_requested = info.cancel_requested();
  if (info.has_error()) {
    op.error_code = info.error().code();
    op.error = info.error().message();
  }
  op.heads.assign(info.heads().begin(), info.heads().end());
  op.current_revision = info.current_revision();
  op.step_index = info.step_index();
  op.step_count = info.step_count();
  op.revisions_run = info.revisions_run();
  op.event_count = info.event_count();
  op.events_dropped = info.events_dropped();
  write.drop_marks = pending.over_mark;
  op.request = pending.op->spec().request;
  if (op.request.empty()) {
    absl::MutexLock lock(&mu_);
    if (auto it = resumed_requests_.find(op.id); it != resumed_requests_.end()) {
      op.request = it->second;
      if (IsFinalState(info.state())) resumed_requests_.erase(it);
    }
  }
  for (const v1::OperationEvent& event : pending.events) {
    store::ControlEvent& out = write.events.emplace_back();
    out.sequence = event.sequence();
    out.kind = EventKind(event);
    out.payload = event.SerializeAsString();
  }
  for (const v1::FleetSiteResult& site : pending.sites) {
    store::ControlSiteResult& out = write.sites.emplace_back();
    out.site = site.site();
    switch (site.outcome()) {
      case v1::FleetSiteResult::OUTCOME_SUCCEEDED:
        out.outcome = "succeeded";
        break;
      case v1::FleetSiteResult::OUTCOME_FAILED:
        out.outcome = "failed";
        break;
      case v1::FleetSiteResult::OUTCOME_CANCELLED:
        out.outcome = "cancelled";
        break;
      default:
        out.outcome = "skipped";
        break;
    }
    out.revisions_run = site.revisions_run();
    out.error = site.error().message();
    out.payload = site.SerializeAsString();
  }
  return write;
}

void ControlPlane::WriterLoop() {
  bool failing = false;
  for (;;) {
    std::map<std::string, Pending> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &ControlPlane::WriterHasWork));
      if (pending_.empty()) return;  // stopping, and everything written
      batch.swap(pending_);
    }
    std::vector<store::ControlOperationWrite> writes;
    uint64_t newest = 0;
    for (const auto& [id, pending] : batch) {
      writes.push_back(MakeWrite(pending));
      newest = std::max(newest, pending.ticket);
    }
    const absl::Status status = store_->Write(writes);
    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      written_ = std::max(written_, newest);
      if (failing) log_->info("control database writes resumed");
      failing = false;
      continue;
    }
    if (!failing) {
      log_->warn("control database write failed, retrying every {}s error={}",
                 absl::ToInt64Seconds(kWriteRetry), LogValue(status.message()));
    }
    failing = true;
    // Put the batch back in front of what came meanwhile (events in order).
    for (auto& [id, pending] : batch) {
      auto it = pending_.find(id);
      if (it == pending_.end()) {
        pending_.emplace(id, std::move(pending));
        continue;
      }
      Pending& newer = it->second;
      pending.events.insert(pending.events.end(), newer.events.begin(), newer.events.end());
      pending.sites.insert(pending.sites.end(), newer.sites.begin(), newer.sites.end());
      newer.over_mark = newer.over_mark || pending.over_mark;
      newer.events = std::move(pending.events);
      newer.sites = std::move(pending.sites);
    }
    if (stopping_) return;  // Shutdown gave up on them
    mu_.AwaitWithTimeout(absl::Condition(this, &ControlPlane::Stopping), kWriteRetry);
  }
}

bool ControlPlane::Flush(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const uint64_t target = enqueued_;
  const auto done = [this, target]()
                        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return written_ >= target; };
  return mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
}

void ControlPlane::MaintenanceLoop() {
  absl::Time next_renewal = absl::Now() + options_.lease / 3;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(this, &ControlPlane::Stopping),
                               options_.poll_interval)) {
        return;
      }
    }
    PollFollowers();
    PollCancels();
    if (absl::Now() >= next_renewal) {
      RenewAndSweep();
      next_renewal = absl::Now() + options_.lease / 3;
    }
  }
}

void ControlPlane::PollFollowers() {
  std::vector<std::pair<std::string, Follower>> followers;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, follower] : followers_) {
      follower.seen_observer = follower.seen_observer || follower.mirror->observer_count() > 0;
      followers.emplace_back(id, follower);
    }
  }
  for (auto& [id, follower] : followers) {
    std::optional<absl::Status> end;
    const int observers = follower.mirror->observer_count();
    if ((follower.seen_observer && observers == 0) ||
        (!follower.seen_observer && absl::Now() - follower.since > kUnwatchedAfter)) {
      end = absl::CancelledError("nobody watches");
    } else {
      // The row first: when it is final, every event it had is read after.
      absl::StatusOr<std::optional<store::ControlOperation>> row = store_->ReadOperation(id);
      if (!row.ok()) {
        end = row.status();
      } else if (!row->has_value()) {
        if (absl::Now() - follower.since > kUnknownAfter) {
          end = absl::NotFoundError(
              absl::StrCat("operation \"", id, "\" is unknown to every replica (or has expired)"));
        }
      } else {
        follower.found = true;
        absl::StatusOr<std::vector<store::ControlEvent>> events =
            store_->ReadEvents(id, follower.next_sequence, kEventsPerRead);
        if (!events.ok()) {
          end = events.status();
        } else {
          for (const store::ControlEvent& stored : *events) {
            v1::OperationEvent event;
            if (!event.ParseFromString(stored.payload)) continue;
            follower.next_sequence = stored.sequence + 1;
            follower.mirror->AppendMirrored(std::move(event));
          }
          if (IsFinalState(StateFromName((**row).state)) &&
              static_cast<int>(events->size()) < kEventsPerRead) {
            end = StatusOf(**row);
          }
        }
      }
    }
    {
      absl::MutexLock lock(&mu_);
      if (end.has_value()) {
        followers_.erase(id);
      } else if (auto it = followers_.find(id); it != followers_.end()) {
        it->second.next_sequence = follower.next_sequence;
        it->second.found = follower.found;
        it->second.seen_observer = follower.seen_observer;
      }
    }
    if (end.has_value()) follower.mirror->FinishMirrored(*end);
  }
}

void ControlPlane::PollCancels() {
  OperationRegistry* operations = nullptr;
  {
    absl::MutexLock lock(&mu_);
    operations = operations_;
  }
  if (operations == nullptr || operations->running() == 0) return;
  absl::StatusOr<std::vector<std::string>> ids = store_->CancelRequested(self_.name);
  if (!ids.ok()) return;  // the next poll tries again
  for (const std::string& id : *ids) {
    absl::StatusOr<std::shared_ptr<Operation>> op = operations->Find(id);
    if (!op.ok() || (*op)->cancel_requested()) continue;
    (void)(*op)->RequestCancel("CancelOperation through another replica");
  }
}

bool ControlPlane::Reachable() const {
  absl::MutexLock lock(&reach_mu_);
  return reachable_;
}

void ControlPlane::OnReachability(std::function<void(bool reachable)> listener) {
  absl::MutexLock lock(&reach_mu_);
  reach_listener_ = std::move(listener);
  if (reach_listener_) {
    reach_listener_(reachable_);
  }
}

void ControlPlane::SetReachable(bool reachable) {
  absl::MutexLock lock(&reach_mu_);
  if (reachable == reachable_) {
    return;
  }
  reachable_ = reachable;
  if (reachable) {
    log_->info("control database answers again: this replica is ready");
  } else {
    log_->warn("control database does not answer: this replica is not ready");
  }
  if (reach_listener_) {
    reach_listener_(reachable);
  }
}

void ControlPlane::RenewAndSweep() {
  absl::StatusOr<bool> ours = store_->RenewLease(self_, options_.lease);
  SetReachable(ours.ok());
  if (!ours.ok()) {
    log_->warn("control database: lease not renewed error={}", LogValue(ours.status().message()));
    return;
  }
  if (!*ours) {
    log_->error(
        "control database: another schemad registered replica_name={} since this one did; "
        "replica names must be unique",
        LogValue(self_.name));
  } else {
    RewriteMarked();
  }
  absl::StatusOr<std::vector<store::ControlOperation>> abandoned = store_->AbandonExpired();
  if (!abandoned.ok()) {
    log_->warn("control database: expired leases not checked error={}",
               LogValue(abandoned.status().message()));
  } else if (!abandoned->empty()) {
    std::vector<store::ControlOperationWrite> writes;
    for (const store::ControlOperation& op : *abandoned) {
      log_->warn("operation abandoned op={} db={} kind={} replica={} error={}", op.id,
                 LogValue(op.database), op.kind, LogValue(op.replica), LogValue(op.error));
      // A `finished` event, so that watchers of the operation see its end.
      store::ControlOperationWrite& write = writes.emplace_back();
      write.operation = op;
      write.operation.event_count = op.event_count + 1;
      v1::OperationEvent event;
      event.set_operation_id(op.id);
      event.set_database(op.database);
      event.set_sequence(op.event_count);
      ToProto(absl::Now(), event.mutable_time());
      v1::OperationFinished* finished = event.mutable_finished();
      finished->set_state(v1::OPERATION_STATE_ABANDONED);
      ToProtoError(StatusOf(op), finished->mutable_error());
      for (const std::string& head : op.heads) finished->add_heads(head);
      finished->set_revisions_run(op.revisions_run);
      MakeWireSafe(&event);
      store::ControlEvent& stored = write.events.emplace_back();
      stored.sequence = event.sequence();
      stored.kind = EventKind(event);
      stored.payload = event.SerializeAsString();
    }
    if (absl::Status status = store_->Write(writes); !status.ok()) {
      log_->warn("control database: abandoned operations' events not written error={}",
                 LogValue(status.message()));
    }
  }
  if (absl::Now() - last_prune_ > kPruneEvery) {
    last_prune_ = absl::Now();
    (void)store_->Prune(absl::Now() - options_.retention, options_.max_retained);
  }
}

void ControlPlane::RewriteMarked() {
  OperationRegistry* operations = nullptr;
  {
    absl::MutexLock lock(&mu_);
    operations = operations_;
  }
  if (operations == nullptr || operations->running() == 0) return;
  for (const std::shared_ptr<Operation>& op : operations->List("", /*running_only=*/true, 0)) {
    absl::StatusOr<std::optional<store::ControlOperation>> row = store_->ReadOperation(op->id());
    if (!row.ok()) return;  // the next renewal looks again
    if (!row->has_value() || (**row).state != "abandoned") continue;
    log_->warn(
        "operation marked abandoned by another replica while this one was cut off from the "
        "control database; writing its true state over the mark op={} db={}",
        op->id(), LogValue(op->spec().database));
    Enqueue(op, nullptr, nullptr, /*over_mark=*/true);
  }
}

v1::OperationInfo ControlPlane::ToInfo(const store::ControlOperation& op) {
  v1::OperationInfo info;
  info.set_operation_id(op.id);
  info.set_database(op.database);
  info.set_kind(KindFromName(op.kind));
  info.set_target(op.target);
  info.set_who(op.who);
  info.set_state(StateFromName(op.state));
  ToProto(op.created, info.mutable_created());
  if (op.started != absl::InfinitePast()) ToProto(op.started, info.mutable_started());
  if (op.finished != absl::InfinitePast()) ToProto(op.finished, info.mutable_finished());
  if (IsFinalState(info.state()) && op.state != "succeeded") {
    ToProtoError(StatusOf(op), info.mutable_error());
  }
  info.set_cancel_requested(op.cancel_requested);
  info.set_current_revision(op.current_revision);
  info.set_step_index(op.step_index);
  info.set_step_count(op.step_count);
  for (const std::string& head : op.heads) info.add_heads(head);
  info.set_event_count(op.event_count);
  info.set_events_dropped(op.events_dropped);
  info.set_replica(op.replica);
  info.set_revisions_run(op.revisions_run);
  MakeWireSafe(&info);
  return info;
}

absl::StatusOr<std::vector<v1::OperationInfo>> ControlPlane::ListPage(
    const std::string& database, bool running_only, int limit, const std::string& page_token,
    std::string* next_page_token) {
  store::ControlOperationQuery query;
  query.database = database;
  query.running_only = running_only;
  query.limit = limit + 1;
  if (!page_token.empty()) {
    absl::string_view rest = page_token;
    size_t dot = absl::string_view::npos;
    int64_t micros = 0;
    if (absl::ConsumePrefix(&rest, kPageTokenPrefix)) dot = rest.find('.');
    if (dot == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(0, dot), &micros)) {
      return absl::InvalidArgumentError(
          "ListOperationsRequest.page_token is not a token this server returned");
    }
    query.before = store::ControlOperationQuery::Key{absl::FromUnixMicros(micros),
                                                     std::string(rest.substr(dot + 1))};
  }
  (void)Flush(absl::Now() + absl::Seconds(1));
  ASSIGN_OR_RETURN(std::vector<store::ControlOperation> rows, store_->ListOperations(query));
  OperationRegistry* operations = nullptr;
  {
    absl::MutexLock lock(&mu_);
    operations = operations_;
  }
  std::vector<v1::OperationInfo> out;
  next_page_token->clear();
  for (const store::ControlOperation& row : rows) {
    if (static_cast<int>(out.size()) == limit) {
      const store::ControlOperation& last = rows[out.size() - 1];
      *next_page_token =
          absl::StrCat(kPageTokenPrefix, absl::ToUnixMicros(last.created), ".", last.id);
      break;
    }
    // This replica's own operations as its memory has them (fresher).
    if (row.replica == self_.name && operations != nullptr &&
        !IsFinalState(StateFromName(row.state))) {
      if (absl::StatusOr<std::shared_ptr<Operation>> op = operations->Find(row.id); op.ok()) {
        v1::OperationInfo info = (*op)->Info();
        info.set_replica(self_.name);
        out.push_back(std::move(info));
        continue;
      }
    }
    out.push_back(ToInfo(row));
  }
  return out;
}

std::shared_ptr<Operation> ControlPlane::Follow(const std::string& id) {
  std::shared_ptr<Operation> mirror = Operation::Mirror(id, log_);
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    // The mirror has no observer yet: finishing it under the lock calls nobody.
    mirror->FinishMirrored(absl::UnavailableError("schemad is shutting down"));
    return mirror;
  }
  Follower follower;
  follower.mirror = mirror;
  follower.since = absl::Now();
  // Several watchers of one operation each get their own mirror.
  std::string key = id;
  for (int n = 1; followers_.count(key) > 0; ++n) key = absl::StrCat(id, "#", n);
  followers_.emplace(key, std::move(follower));
  return mirror;
}

absl::StatusOr<v1::OperationInfo> ControlPlane::Cancel(const std::string& id) {
  ASSIGN_OR_RETURN(std::optional<store::ControlOperation> op, store_->RequestCancel(id));
  if (!op.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("operation \"", id, "\" is unknown to every replica (or has expired)"));
  }
  if (IsFinalState(StateFromName(op->state))) {
    return absl::FailedPreconditionError(
        absl::StrCat("operation ", id, " has already finished (", op->state, ")"));
  }
  log_->info("operation cancel requested op={} db={} replica={} (through the control database)", id,
             LogValue(op->database), LogValue(op->replica));
  return ToInfo(*op);
}

absl::StatusOr<ControlPlane::Resumable> ControlPlane::ClaimResume(const std::string& id,
                                                                  const std::string& by) {
  ASSIGN_OR_RETURN(store::ControlOperation op, store_->ClaimResume(id, by));
  Resumable out;
  if (!out.request.ParseFromString(op.request) || op.request.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("fleet run ", id, " has no request stored to run again"));
  }
  {
    absl::MutexLock lock(&mu_);
    resumed_requests_[by] = op.request;
  }
  ASSIGN_OR_RETURN(std::vector<store::ControlSiteResult> sites, store_->ReadSites(id));
  for (const store::ControlSiteResult& site : sites) {
    if (site.outcome == "succeeded") out.succeeded.insert(site.site);
  }
  log_->info("fleet run claimed for resume op={} resumed_by={} sites_succeeded={}", id, by,
             out.succeeded.size());
  return out;
}

void ControlPlane::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  // Let the writer empty the queue first, then stop it.
  if (!Flush(absl::Now() + kShutdownFlush)) {
    log_->warn("control database: shutting down with operation writes not written");
  }
  std::map<std::string, Follower> followers;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    followers.swap(followers_);
  }
  if (writer_.joinable()) writer_.join();
  if (maintenance_.joinable()) maintenance_.join();
  for (auto& [id, follower] : followers) {
    follower.mirror->FinishMirrored(absl::UnavailableError("schemad is shutting down"));
  }
  if (absl::Status status = store_->ReleaseReplica(self_); !status.ok()) {
    log_->warn("control database: lease not released error={}", LogValue(status.message()));
  }
}

}  // namespace schemad::server
