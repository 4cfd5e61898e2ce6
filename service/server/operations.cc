#include "service/server/operations.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "service/common/utf8.h"
#include "service/server/proto_conversion.h"
#include "service/server/proto_time.h"
#include "service/server/status_conversion.h"
#include "service/server/wire_safety.h"

namespace schemad::server {
namespace {

const char* KindName(v1::OperationKind kind) { return OperationKindName(kind); }
const char* StateName(v1::OperationState state) { return OperationStateName(state); }
bool IsFinal(v1::OperationState state) { return IsFinalState(state); }

// Text in log lines is bounded (a database error can be megabytes).
constexpr size_t kMaxLoggedTextBytes = 1024;

// ListPage's tokens: "p" + the serial of the last operation of the page.
constexpr absl::string_view kPageTokenPrefix = "p";

}  // namespace

const char* OperationKindName(v1::OperationKind kind) {
  switch (kind) {
    case v1::OPERATION_KIND_ENSURE_HEAD:
      return "ensure-head";
    case v1::OPERATION_KIND_UPGRADE:
      return "upgrade";
    case v1::OPERATION_KIND_DOWNGRADE:
      return "downgrade";
    case v1::OPERATION_KIND_MERGE:
      return "merge";
    case v1::OPERATION_KIND_STAMP:
      return "stamp";
    case v1::OPERATION_KIND_RESOLVE:
      return "resolve";
    case v1::OPERATION_KIND_FLEET:
      return "fleet";
    default:
      break;
  }
  return "unknown";
}

const char* OperationStateName(v1::OperationState state) {
  switch (state) {
    case v1::OPERATION_STATE_QUEUED:
      return "queued";
    case v1::OPERATION_STATE_RUNNING:
      return "running";
    case v1::OPERATION_STATE_SUCCEEDED:
      return "succeeded";
    case v1::OPERATION_STATE_FAILED:
      return "failed";
    case v1::OPERATION_STATE_CANCELLED:
      return "cancelled";
    case v1::OPERATION_STATE_ABANDONED:
      return "abandoned";
    default:
      break;
  }
  return "unknown";
}

bool IsFinalState(v1::OperationState state) {
  return state == v1::OPERATION_STATE_SUCCEEDED || state == v1::OPERATION_STATE_FAILED ||
         state == v1::OPERATION_STATE_CANCELLED || state == v1::OPERATION_STATE_ABANDONED;
}

bool IsDetailEvent(const v1::OperationEvent& event) {
  switch (event.event_case()) {
    case v1::OperationEvent::kStatementStarted:
    case v1::OperationEvent::kWaitingForLock:
      return true;
    case v1::OperationEvent::kFleet:
      return event.fleet().kind() == v1::FleetEvent::KIND_SITE_EVENT &&
             IsDetailEvent(event.fleet().event());
    default:
      return false;
  }
}

// ----------------------------------------------------------------- Operation

class Operation::Sink final : public engine::EventSink {
 public:
  explicit Sink(Operation* op) : op_(op) {}
  // engine::EventSink:
  void OnEvent(const engine::Event& event) override { op_->OnEngineEvent(event); }

 private:
  Operation* op_;
};

Operation::Operation(std::string id, OperationSpec spec, std::shared_ptr<spdlog::logger> log,
                     uint64_t serial, int max_kept_detail_events)
    : id_(std::move(id)),
      spec_(std::move(spec)),
      log_(std::move(log)),
      serial_(serial),
      max_kept_detail_events_(max_kept_detail_events),
      created_(absl::Now()),
      sink_(std::make_unique<Sink>(this)) {}

void Operation::Subscribe(std::shared_ptr<OperationObserver> observer) {
  absl::Status status;
  v1::OperationResult result;
  {
    absl::MutexLock lock(&mu_);
    for (const v1::OperationEvent& event : events_) {
      observer->OnEvent(event);
    }
    if (!IsFinal(state_)) {
      observers_.push_back(std::move(observer));
      return;
    }
    status = status_;
    result = result_;
  }
  observer->OnDone(status, result);
}

std::shared_ptr<Operation> Operation::Mirror(std::string id, std::shared_ptr<spdlog::logger> log) {
  auto op = std::make_shared<Operation>(std::move(id), OperationSpec{}, std::move(log));
  absl::MutexLock lock(&op->mu_);
  op->state_ = v1::OPERATION_STATE_RUNNING;
  return op;
}

void Operation::AppendMirrored(v1::OperationEvent event) {
  absl::MutexLock lock(&mu_);
  if (IsFinal(state_)) return;
  emitted_ = std::max(emitted_, event.sequence() + 1);
  events_.push_back(std::move(event));
  for (const std::shared_ptr<OperationObserver>& observer : observers_) {
    observer->OnEvent(events_.back());
  }
}

void Operation::FinishMirrored(const absl::Status& status) {
  std::vector<std::shared_ptr<OperationObserver>> observers;
  {
    absl::MutexLock lock(&mu_);
    if (IsFinal(state_)) return;
    state_ = status.ok() ? v1::OPERATION_STATE_SUCCEEDED : v1::OPERATION_STATE_FAILED;
    status_ = status;
    finished_at_ = absl::Now();
    observers.swap(observers_);
  }
  for (const std::shared_ptr<OperationObserver>& observer : observers) {
    observer->OnDone(status, v1::OperationResult());
  }
}

int Operation::observer_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(observers_.size());
}

void Operation::Unsubscribe(const OperationObserver* observer) {
  absl::MutexLock lock(&mu_);
  observers_.erase(std::remove_if(observers_.begin(), observers_.end(),
                                  [observer](const std::shared_ptr<OperationObserver>& o) {
                                    return o.get() == observer;
                                  }),
                   observers_.end());
}

v1::OperationInfo Operation::Info() const {
  v1::OperationInfo info;
  info.set_operation_id(id_);
  info.set_database(spec_.database);
  info.set_kind(spec_.kind);
  info.set_target(spec_.target);
  info.set_who(spec_.who);
  ToProto(created_, info.mutable_created());
  absl::MutexLock lock(&mu_);
  info.set_state(state_);
  if (started_ != absl::InfinitePast()) {
    ToProto(started_, info.mutable_started());
  }
  if (finished_at_ != absl::InfinitePast()) {
    ToProto(finished_at_, info.mutable_finished());
  }
  if (IsFinal(state_) && !status_.ok()) {
    ToProtoError(status_, info.mutable_error());
  }
  info.set_cancel_requested(cancel_requested_);
  if (in_revision_) {
    info.set_current_revision(current_revision_);
  }
  info.set_step_index(step_index_);
  info.set_step_count(step_count_);
  if (IsFinal(state_)) {
    *info.mutable_heads() = result_.heads();
  }
  info.set_event_count(emitted_);
  info.set_events_dropped(dropped_events_);
  info.set_revisions_run(state_ == v1::OPERATION_STATE_SUCCEEDED ? result_.revisions_run()
                                                                 : revisions_done_);
  MakeWireSafe(&info);
  return info;
}

int64_t Operation::emitted_events() const {
  absl::MutexLock lock(&mu_);
  return emitted_;
}

int64_t Operation::kept_events() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(events_.size());
}

bool Operation::finished() const {
  absl::MutexLock lock(&mu_);
  return IsFinal(state_);
}

v1::OperationState Operation::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

absl::Time Operation::finished_at() const {
  absl::MutexLock lock(&mu_);
  return finished_at_;
}

bool Operation::cancel_requested() const {
  absl::MutexLock lock(&mu_);
  return cancel_requested_;
}

engine::CallControl Operation::control() {
  engine::CallControl control;
  control.operation_id = id_;
  control.sink = sink_.get();
  control.cancelled = &cancelled_;
  return control;
}

void Operation::SetSession(store::Session* session) {
  absl::MutexLock lock(&mu_);
  if (session == nullptr) {
    // A cancel may be talking to the old session right now.
    mu_.Await(absl::Condition(this, &Operation::NoCancelInFlight));
  }
  session_ = session;
}

void Operation::CancelStatement() {
  store::Session* session = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (session_ == nullptr || IsFinal(state_)) {
      return;
    }
    session = session_;
    ++cancels_in_flight_;
  }
  session->Cancel();
  absl::MutexLock lock(&mu_);
  --cancels_in_flight_;
}

absl::Status Operation::RequestCancel(absl::string_view reason) {
  {
    absl::MutexLock lock(&mu_);
    if (IsFinal(state_)) {
      return absl::FailedPreconditionError(
          absl::StrCat("operation ", id_, " has already finished (", StateName(state_), ")"));
    }
    cancel_requested_ = true;
    cancelled_.store(true);
  }
  log_->info("operation cancel requested op={} db={} reason={}", id_, spec_.database,
             LogValue(reason));
  CancelStatement();
  return absl::OkStatus();
}

void Operation::StopAfterRevision() {
  absl::MutexLock lock(&mu_);
  if (IsFinal(state_)) {
    return;
  }
  stop_after_revision_ = true;
  if (!in_revision_) {
    cancelled_.store(true);
  }
}

void Operation::RepeatCancel() {
  {
    absl::MutexLock lock(&mu_);
    if (!cancel_requested_ || IsFinal(state_)) {
      return;
    }
  }
  CancelStatement();
}

void Operation::EmitFleet(v1::FleetEvent event) {
  v1::OperationEvent wrapped;
  *wrapped.mutable_fleet() = std::move(event);
  Emit(std::move(wrapped));
}

void Operation::Emit(v1::OperationEvent event) {
  absl::MutexLock lock(&mu_);
  EmitLocked(std::move(event));
}

void Operation::EmitLocked(v1::OperationEvent event) {
  event.set_operation_id(id_);
  event.set_database(spec_.database);
  event.set_sequence(emitted_++);
  if (!event.has_time()) {
    ToProto(absl::Now(), event.mutable_time());
  }
  MakeWireSafe(&event);
  const bool keep = !IsDetailEvent(event) || kept_detail_events_ < max_kept_detail_events_;
  if (!keep) {
    ++dropped_events_;
    for (const std::shared_ptr<OperationObserver>& observer : observers_) {
      observer->OnEvent(event);
    }
    return;
  }
  if (IsDetailEvent(event)) {
    ++kept_detail_events_;
  }
  events_.push_back(std::move(event));
  for (const std::shared_ptr<OperationObserver>& observer : observers_) {
    observer->OnEvent(events_.back());
  }
}

void Operation::MarkRunning() {
  absl::MutexLock lock(&mu_);
  state_ = v1::OPERATION_STATE_RUNNING;
  started_ = absl::Now();
}

void Operation::OnEngineEvent(const engine::Event& e) {
  switch (e.kind) {
    case engine::Event::Kind::kOperationStarted:
      log_->info("operation started op={} db={} operation={} target={} steps={}", id_,
                 spec_.database, LogValue(e.operation), LogValue(e.target), e.plan.size());
      break;
    case engine::Event::Kind::kWaitingForLock:
      log_->info("waiting for migration lock op={} db={} holder={} waited_ms={}", id_,
                 spec_.database, LogValue(e.lock_holder), absl::ToInt64Milliseconds(e.waited));
      break;
    case engine::Event::Kind::kRevisionStarted:
      log_->info("revision started op={} db={} revision={} direction={} step={}/{}", id_,
                 spec_.database, LogValue(e.revision), engine::DirectionName(e.direction),
                 e.step_index + 1, e.step_count);
      break;
    case engine::Event::Kind::kStatementStarted:
      log_->debug("statement started op={} db={} revision={} statement={}/{} line={}", id_,
                  spec_.database, LogValue(e.revision), e.statement_index + 1, e.statement_count,
                  e.line);
      break;
    case engine::Event::Kind::kRevisionFinished:
      log_->info("revision finished op={} db={} revision={} ok={} elapsed_ms={}", id_,
                 spec_.database, LogValue(e.revision), e.status.ok(),
                 absl::ToInt64Milliseconds(e.duration));
      break;
    default:
      break;
  }
  v1::OperationEvent event;
  const bool has_wire_form = spec_.graph != nullptr ? ToProto(e, *spec_.graph, &event) : false;
  absl::MutexLock lock(&mu_);
  if (e.kind == engine::Event::Kind::kOperationFinished) {
    engine_finished_ = true;
    engine_rows_after_ = e.rows_after;
    return;
  }
  if (e.kind == engine::Event::Kind::kRevisionStarted) {
    in_revision_ = true;
    current_revision_ = e.revision;
    step_index_ = e.step_index;
    step_count_ = e.step_count;
  } else if (e.kind == engine::Event::Kind::kRevisionFinished) {
    in_revision_ = false;
    if (e.status.ok()) {
      ++revisions_done_;
    }
    if (stop_after_revision_) {
      cancelled_.store(true);  // stop before the next revision
    }
  }
  if (has_wire_form) {
    EmitLocked(std::move(event));
  }
}

void Operation::Finish(const absl::StatusOr<OperationOutcome>& outcome) {
  std::vector<std::shared_ptr<OperationObserver>> observers;
  absl::Status status = outcome.status();
  v1::OperationResult result;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    v1::OperationEvent event;
    v1::OperationFinished* finished = event.mutable_finished();
    if (outcome.ok()) {
      if (spec_.graph != nullptr) {
        ToProto(outcome->result, *spec_.graph, &result);
      }
      result.set_operation_id(id_);
      result.set_database(spec_.database);
      MakeWireSafe(&result);
      finished->set_state(v1::OPERATION_STATE_SUCCEEDED);
      *finished->mutable_heads() = result.heads();
      finished->set_revisions_run(outcome->result.revisions_run);
    } else {
      finished->set_state(status.code() == absl::StatusCode::kCancelled
                              ? v1::OPERATION_STATE_CANCELLED
                              : v1::OPERATION_STATE_FAILED);
      ToProtoError(status, finished->mutable_error());
      for (const std::string& row : engine_rows_after_) {
        finished->add_heads(row);
      }
      finished->set_revisions_run(revisions_done_);
    }
    ToProto(started_ == absl::InfinitePast() ? absl::ZeroDuration() : now - started_,
            finished->mutable_duration());
    const v1::OperationState final_state = finished->state();
    EmitLocked(std::move(event));
    state_ = final_state;
    status_ = status;
    result_ = result;
    finished_at_ = now;
    in_revision_ = false;
    observers.swap(observers_);
    log_->info("operation finished op={} db={} kind={} state={} revisions_run={} elapsed_ms={}{}",
               id_, spec_.database, KindName(spec_.kind), StateName(final_state),
               outcome.ok() ? outcome->result.revisions_run : revisions_done_,
               absl::ToInt64Milliseconds(now - (started_ == absl::InfinitePast() ? now : started_)),
               status.ok() ? std::string()
                           : absl::StrCat(
                                 " code=", absl::StatusCodeToString(status.code()), " error=",
                                 LogfmtValue(TruncateUtf8(status.message(), kMaxLoggedTextBytes))));
  }
  for (const std::shared_ptr<OperationObserver>& observer : observers) {
    observer->OnDone(status, result);
  }
}

// --------------------------------------------------------- OperationRegistry

OperationRegistry::OperationRegistry(OperationRegistryOptions options,
                                     std::shared_ptr<spdlog::logger> log)
    : options_(options), log_(std::move(log)), workers_("schemad-op", options.workers) {
  maintenance_ = std::thread([this] { Maintain(); });
}

OperationRegistry::~OperationRegistry() {
  bool accepting = false;
  {
    absl::MutexLock lock(&mu_);
    accepting = accepting_ || !stop_maintenance_;
  }
  if (accepting) {
    Shutdown(absl::ZeroDuration(), absl::Seconds(60));
  }
  workers_.Stop();
  {
    absl::MutexLock lock(&mu_);
    stop_maintenance_ = true;
  }
  if (maintenance_.joinable()) {
    maintenance_.join();
  }
}

absl::StatusOr<std::shared_ptr<Operation>> OperationRegistry::Start(OperationSpec spec, Body body) {
  absl::MutexLock lock(&mu_);
  return StartLocked(std::move(spec), std::move(body));
}

absl::StatusOr<std::shared_ptr<Operation>> OperationRegistry::StartOrJoin(OperationSpec spec,
                                                                          Body body) {
  absl::MutexLock lock(&mu_);
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    const std::shared_ptr<Operation>& op = *it;
    if (op->spec().kind != spec.kind || op->spec().database != spec.database) {
      continue;
    }
    absl::MutexLock op_lock(&op->mu_);
    if (!IsFinal(op->state_) && !op->cancel_requested_ && !op->stop_after_revision_) {
      return op;
    }
  }
  return StartLocked(std::move(spec), std::move(body));
}

absl::StatusOr<std::shared_ptr<Operation>> OperationRegistry::StartLocked(OperationSpec spec,
                                                                          Body body) {
  if (!accepting_) {
    return absl::UnavailableError("schemad is shutting down and accepts no new operations");
  }
  PruneLocked(absl::Now());
  auto op = std::make_shared<Operation>(engine::NewOperationId(), std::move(spec), log_,
                                        next_serial_++, options_.max_kept_detail_events);
  for (const auto& observe : options_.observe_each) {
    op->Subscribe(observe(*op));
  }
  v1::OperationEvent accepted;
  accepted.mutable_accepted()->set_kind(op->spec().kind);
  accepted.mutable_accepted()->set_target(op->spec().target);
  accepted.mutable_accepted()->set_who(op->spec().who);
  for (const v1::LintFinding& finding : op->spec().lint_errors) {
    *accepted.mutable_accepted()->add_lint_errors() = finding;
  }
  op->Emit(std::move(accepted));
  log_->info("operation accepted op={} db={} kind={} target={} who={}", op->id(),
             LogValue(op->spec().database), KindName(op->spec().kind), LogValue(op->spec().target),
             LogValue(op->spec().who));
  order_.push_back(op);
  by_id_[op->id()] = op;
  ++active_;
  if (!workers_.Submit([this, op, body = std::move(body)] { Run(op, body); })) {
    --active_;
    op->Finish(absl::UnavailableError("schemad is shutting down"));
  }
  return op;
}

void OperationRegistry::Run(const std::shared_ptr<Operation>& op, const Body& body) {
  op->MarkRunning();
  absl::StatusOr<OperationOutcome> outcome;
  if (op->cancelled_.load()) {
    outcome = absl::CancelledError(
        absl::StrCat("operation ", op->id(), " was cancelled before it started"));
  } else {
    try {
      outcome = body(*op);
    } catch (const std::exception& e) {
      outcome = absl::InternalError(absl::StrCat("operation failed unexpectedly: ", e.what()));
    } catch (...) {
      outcome = absl::InternalError("operation failed unexpectedly");
    }
  }
  op->SetSession(nullptr);
  op->Finish(outcome);
  absl::MutexLock lock(&mu_);
  --active_;
}

absl::StatusOr<std::shared_ptr<Operation>> OperationRegistry::Find(absl::string_view id) const {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    return absl::NotFoundError(
        absl::StrCat("operation \"", id, "\" is unknown to this server (or has expired)"));
  }
  return it->second;
}

std::vector<std::shared_ptr<Operation>> OperationRegistry::List(absl::string_view database,
                                                                bool running_only,
                                                                int limit) const {
  std::vector<std::shared_ptr<Operation>> out;
  absl::MutexLock lock(&mu_);
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    if (limit > 0 && static_cast<int>(out.size()) >= limit) {
      break;
    }
    if (!database.empty() && (*it)->spec().database != database) {
      continue;
    }
    if (running_only && (*it)->finished()) {
      continue;
    }
    out.push_back(*it);
  }
  return out;
}

absl::StatusOr<OperationPage> OperationRegistry::ListPage(absl::string_view database,
                                                          bool running_only, int limit,
                                                          absl::string_view page_token) const {
  uint64_t before = UINT64_MAX;  // list operations with a smaller serial
  if (!page_token.empty()) {
    absl::string_view digits = page_token;
    if (!absl::ConsumePrefix(&digits, kPageTokenPrefix) || !absl::SimpleAtoi(digits, &before)) {
      return absl::InvalidArgumentError(
          "ListOperationsRequest.page_token is not a token this server returned");
    }
  }
  OperationPage page;
  absl::MutexLock lock(&mu_);
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    const Operation& op = **it;
    if (op.serial() >= before || (!database.empty() && op.spec().database != database) ||
        (running_only && op.finished())) {
      continue;
    }
    if (static_cast<int>(page.operations.size()) >= limit) {
      page.next_page_token = absl::StrCat(kPageTokenPrefix, page.operations.back()->serial());
      break;
    }
    page.operations.push_back(*it);
  }
  return page;
}

absl::StatusOr<std::shared_ptr<Operation>> OperationRegistry::Cancel(absl::string_view id,
                                                                     absl::string_view reason) {
  absl::StatusOr<std::shared_ptr<Operation>> op = Find(id);
  if (!op.ok()) {
    return op.status();
  }
  absl::Status status = (*op)->RequestCancel(reason);
  if (!status.ok()) {
    return status;
  }
  return op;
}

bool OperationRegistry::AllFinished() const { return active_ == 0; }

int OperationRegistry::running() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

bool OperationRegistry::Shutdown(absl::Duration grace, absl::Duration drain) {
  std::vector<std::shared_ptr<Operation>> unfinished;
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    for (const auto& op : order_) {
      if (!op->finished()) {
        unfinished.push_back(op);
      }
    }
  }
  if (!unfinished.empty()) {
    log_->info("shutdown: letting running operations finish their revision count={} grace_ms={}",
               unfinished.size(), absl::ToInt64Milliseconds(grace));
  }
  for (const auto& op : unfinished) {
    op->StopAfterRevision();
  }
  bool all_done = false;
  {
    absl::MutexLock lock(&mu_);
    all_done = mu_.AwaitWithTimeout(absl::Condition(this, &OperationRegistry::AllFinished), grace);
  }
  if (!all_done) {
    for (const auto& op : unfinished) {
      if (!op->finished()) {
        log_->warn("shutdown: grace period over, cancelling op={} db={}", op->id(),
                   op->spec().database);
        (void)op->RequestCancel("schemad is shutting down");
      }
    }
    absl::MutexLock lock(&mu_);
    all_done = mu_.AwaitWithTimeout(absl::Condition(this, &OperationRegistry::AllFinished), drain);
  }
  {
    absl::MutexLock lock(&mu_);
    stop_maintenance_ = true;
  }
  if (!all_done) {
    log_->error("shutdown: operations still running after cancellation count={}", running());
  }
  return all_done;
}

void OperationRegistry::PruneLocked(absl::Time now) {
  int finished = 0;
  for (const auto& op : order_) {
    finished += op->finished() ? 1 : 0;
  }
  std::vector<std::shared_ptr<Operation>> kept;
  kept.reserve(order_.size());
  for (const auto& op : order_) {  // oldest first
    const absl::Time finished_at = op->finished_at();
    const bool done = finished_at != absl::InfinitePast();
    if (done && (finished_at < now - options_.retention || finished > options_.max_retained)) {
      by_id_.erase(op->id());
      --finished;
      continue;
    }
    kept.push_back(op);
  }
  order_.swap(kept);
}

void OperationRegistry::Maintain() {
  absl::Time last_prune = absl::Now();
  for (;;) {
    std::vector<std::shared_ptr<Operation>> ops;
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(this, &OperationRegistry::MaintenanceStopped),
                               options_.cancel_repeat)) {
        return;
      }
      for (const auto& op : order_) {
        if (!op->finished()) {
          ops.push_back(op);
        }
      }
      if (absl::Now() - last_prune > absl::Seconds(10)) {
        PruneLocked(absl::Now());
        last_prune = absl::Now();
      }
    }
    for (const auto& op : ops) {
      op->RepeatCancel();
    }
  }
}

}  // namespace schemad::server
