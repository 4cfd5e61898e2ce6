#include "client/cli/output.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace schemad::cli {
namespace {

using engine::Event;
using engine::RevisionGraph;

std::string DownRevisionText(const RevisionGraph& graph, int index) {
  const engine::Revision& revision = graph.revision(index);
  if (revision.revises.empty()) {
    return "<base>";
  }
  return absl::StrJoin(revision.revises, ", ");
}

bool IsHead(const RevisionGraph& graph, int index) { return graph.node(index).next.empty(); }
bool IsRealHead(const RevisionGraph& graph, int index) {
  return graph.node(index).all_next.empty();
}

std::string OptionalDurationText(const std::optional<absl::Duration>& duration) {
  if (!duration.has_value()) {
    return "";
  }
  if (*duration == absl::ZeroDuration()) {
    return "0 (no limit)";
  }
  return engine::HumanDuration(*duration);
}

Json StringList(const std::vector<std::string>& values) {
  Json list = Json::array();
  for (const std::string& value : values) {
    list.push_back(value);
  }
  return list;
}

}  // namespace

std::string JsonText(const Json& json) {
  return json.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

std::string FormatRevisionLine(const RevisionGraph& graph, int index, const LineFormat& format,
                               bool current) {
  const engine::Revision& revision = graph.revision(index);
  std::string text = revision.id;
  if (format.parents) {
    if (!revision.depends_on.empty()) {
      text = absl::StrCat(DownRevisionText(graph, index), " (",
                          absl::StrJoin(revision.depends_on, ", "), ") -> ", text);
    } else {
      text = absl::StrCat(DownRevisionText(graph, index), " -> ", text);
    }
  }
  const std::vector<std::string>& labels = graph.node(index).branch_labels;
  if (format.labels && !labels.empty()) {
    absl::StrAppend(&text, " (", absl::StrJoin(labels, ", "), ")");
  }
  if (format.head_marks || format.tree_marks) {
    if (IsRealHead(graph, index)) {
      absl::StrAppend(&text, " (head)");
    } else if (IsHead(graph, index)) {
      absl::StrAppend(&text, " (effective head)");
    }
    if (current) {
      absl::StrAppend(&text, " (current)");
    }
  }
  if (format.tree_marks) {
    if (graph.IsBranchPoint(index)) {
      absl::StrAppend(&text, " (branchpoint)");
    }
    if (graph.IsMergePoint(index)) {
      absl::StrAppend(&text, " (mergepoint)");
    }
  }
  if (format.message) {
    absl::StrAppend(&text, ", ", revision.message);
  }
  return text;
}

std::string FormatLogEntry(const RevisionGraph& graph, int index, bool current,
                           const AppliedInfo* applied) {
  const engine::Revision& revision = graph.revision(index);
  std::string entry = absl::StrCat("Rev: ", revision.id, IsHead(graph, index) ? " (head)" : "",
                                   graph.IsBranchPoint(index) ? " (branchpoint)" : "",
                                   graph.IsMergePoint(index) ? " (mergepoint)" : "",
                                   current ? " (current)" : "", "\n");
  absl::StrAppend(&entry, graph.IsMergePoint(index) ? "Merges: " : "Parent: ",
                  DownRevisionText(graph, index), "\n");
  if (!revision.depends_on.empty()) {
    absl::StrAppend(&entry, "Also depends on: ", absl::StrJoin(revision.depends_on, ", "), "\n");
  }
  if (graph.IsBranchPoint(index)) {
    absl::StrAppend(
        &entry, "Branches into: ", absl::StrJoin(graph.Ids(graph.node(index).next), ", "), "\n");
  }
  const std::vector<std::string>& labels = graph.node(index).branch_labels;
  if (!labels.empty()) {
    absl::StrAppend(&entry, "Branch names: ", absl::StrJoin(labels, ", "), "\n");
  }
  absl::StrAppend(&entry, "Path: ", revision.path.empty() ? "(inline)" : revision.path, "\n");
  if (!revision.created.empty()) {
    absl::StrAppend(&entry, "Created: ", revision.created, "\n");
  }
  absl::StrAppend(&entry, "Transactional: ", revision.transactional ? "true" : "false", "\n");
  if (revision.lock_timeout.has_value()) {
    absl::StrAppend(&entry, "Lock timeout: ", OptionalDurationText(revision.lock_timeout), "\n");
  }
  if (revision.statement_timeout.has_value()) {
    absl::StrAppend(&entry, "Statement timeout: ", OptionalDurationText(revision.statement_timeout),
                    "\n");
  }
  const size_t up = revision.upgrade.has_value() ? revision.upgrade->statements.size() : 0;
  absl::StrAppend(&entry, "Upgrade: ", up, up == 1 ? " statement" : " statements", "\n");
  if (revision.downgrade.has_value()) {
    const size_t down = revision.downgrade->statements.size();
    absl::StrAppend(&entry, "Downgrade: ", down, down == 1 ? " statement" : " statements",
                    down == 0 ? " (no-op)" : "", "\n");
  } else {
    absl::StrAppend(&entry, "Downgrade: none (irreversible)\n");
  }
  if (!revision.checksum.empty()) {
    absl::StrAppend(&entry, "Checksum: ", revision.checksum, "\n");
  }
  if (applied != nullptr) {
    if (!applied->applied) {
      absl::StrAppend(&entry, "Applied: no\n");
    } else if (applied->applied_at.has_value()) {
      absl::StrAppend(&entry, "Applied: ", TimeText(*applied->applied_at));
      if (applied->duration.has_value()) {
        absl::StrAppend(&entry, " in ", DurationText(*applied->duration));
      }
      if (!applied->who.empty()) {
        absl::StrAppend(&entry, " by ", applied->who);
      }
      absl::StrAppend(&entry, "\n");
    } else {
      absl::StrAppend(&entry, "Applied: yes (not recorded in schemad_history)\n");
    }
  }
  absl::StrAppend(&entry, "\n");
  for (absl::string_view line : absl::StrSplit(revision.message, '\n')) {
    absl::StrAppend(&entry, "    ", line, "\n");
  }
  return entry;
}

Json RevisionJson(const RevisionGraph& graph, int index) {
  const engine::Revision& revision = graph.revision(index);
  Json json;
  json["revision"] = revision.id;
  json["revises"] = StringList(revision.revises);
  json["depends_on"] = StringList(revision.depends_on);
  json["branch_labels"] = StringList(graph.node(index).branch_labels);
  json["message"] = revision.message;
  json["created"] = revision.created;
  json["path"] = revision.path;
  json["transactional"] = revision.transactional;
  json["reversible"] = revision.reversible();
  json["is_head"] = IsHead(graph, index);
  json["is_branch_point"] = graph.IsBranchPoint(index);
  json["is_merge_point"] = graph.IsMergePoint(index);
  json["upgrade_statements"] =
      revision.upgrade.has_value() ? revision.upgrade->statements.size() : 0;
  if (revision.downgrade.has_value()) {
    json["downgrade_statements"] = revision.downgrade->statements.size();
  } else {
    json["downgrade_statements"] = nullptr;
  }
  json["lock_timeout_ms"] = revision.lock_timeout.has_value()
                                ? Json(Milliseconds(*revision.lock_timeout))
                                : Json(nullptr);
  json["statement_timeout_ms"] = revision.statement_timeout.has_value()
                                     ? Json(Milliseconds(*revision.statement_timeout))
                                     : Json(nullptr);
  json["checksum"] = revision.checksum;
  return json;
}

std::string DurationText(absl::Duration duration) { return engine::HumanDuration(duration); }

std::string JsonTimeText(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

std::string TimeText(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

double Milliseconds(absl::Duration duration) { return absl::ToDoubleMilliseconds(duration); }

Json StatusJson(const absl::Status& status, int exit_code) {
  Json json;
  json["code"] = absl::StatusCodeToString(status.code());
  json["message"] = std::string(status.message());
  json["exit_code"] = exit_code;
  return json;
}

Json EventJson(const Event& event) {
  Json json;
  json["event"] = std::string(engine::EventKindName(event.kind));
  if (event.time != absl::InfinitePast()) {
    json["time"] = JsonTimeText(event.time);
  }
  json["operation_id"] = event.operation_id;
  switch (event.kind) {
    case Event::Kind::kOperationStarted: {
      json["operation"] = event.operation;
      json["target"] = event.target;
      json["heads_before"] = StringList(event.rows_before);
      Json plan = Json::array();
      for (const engine::PlannedStep& step : event.plan) {
        Json item;
        item["revision"] = step.revision;
        item["direction"] = std::string(engine::DirectionName(step.direction));
        item["path"] = step.path;
        item["statements"] = step.statement_count;
        item["transactional"] = step.transactional;
        plan.push_back(std::move(item));
      }
      json["plan"] = std::move(plan);
      break;
    }
    case Event::Kind::kWaitingForLock:
      json["lock_holder"] = event.lock_holder;
      json["waited_ms"] = Milliseconds(event.waited);
      break;
    case Event::Kind::kLockAcquired:
      json["waited_ms"] = Milliseconds(event.waited);
      break;
    case Event::Kind::kRevisionStarted:
      json["revision"] = event.revision;
      json["direction"] = std::string(engine::DirectionName(event.direction));
      json["step"] = event.step_index + 1;
      json["steps"] = event.step_count;
      json["statements"] = event.statement_count;
      break;
    case Event::Kind::kStatementStarted:
      json["revision"] = event.revision;
      json["statement"] = event.statement_index + 1;
      json["statements"] = event.statement_count;
      json["line"] = event.line;
      break;
    case Event::Kind::kRevisionFinished:
      json["revision"] = event.revision;
      json["direction"] = std::string(engine::DirectionName(event.direction));
      json["duration_ms"] = Milliseconds(event.duration);
      json["ok"] = event.status.ok();
      if (!event.status.ok()) {
        json["error"] = std::string(event.status.message());
      }
      break;
    case Event::Kind::kOperationFinished:
      json["heads_after"] = StringList(event.rows_after);
      json["duration_ms"] = Milliseconds(event.duration);
      json["ok"] = event.status.ok();
      if (!event.status.ok()) {
        json["error"] = std::string(event.status.message());
      }
      break;
  }
  return json;
}

std::string Paint(absl::string_view text, Color color, bool enabled) {
  if (!enabled || text.empty()) return std::string(text);
  const char* code = "1";
  switch (color) {
    case Color::kRed:
      code = "1;31";
      break;
    case Color::kGreen:
      code = "32";
      break;
    case Color::kYellow:
      code = "33";
      break;
    case Color::kBold:
      break;
  }
  return absl::StrCat("\033[", code, "m", text, "\033[0m");
}

std::string FitWidth(absl::string_view text, int width) {
  if (width <= 0 || text.size() <= static_cast<size_t>(width)) {
    return std::string(text);
  }
  size_t cut = static_cast<size_t>(width);
  // Step back over UTF-8 continuation bytes (10xxxxxx) to a character start.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return std::string(text.substr(0, cut));
}

// ------------------------------------------------------------------ ProgressSink

ProgressSink::ProgressSink(std::ostream& out, Options options)
    : out_(out), options_(std::move(options)) {
  if (options_.mode == Mode::kLive && options_.ticker) {
    ticker_ = std::thread([this] { TickerLoop(); });
  }
}

ProgressSink::~ProgressSink() { Finish(); }

void ProgressSink::Finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    ClearLine();
    showing_ = Showing::kNothing;
  }
  wake_.notify_all();
  if (ticker_.joinable()) {
    ticker_.join();
  }
}

void ProgressSink::OnEvent(const Event& event) {
  std::lock_guard<std::mutex> lock(mu_);
  switch (options_.mode) {
    case Mode::kNone:
      return;
    case Mode::kPlain:
      // One line per statement would drown a log; the revision lines say
      // where a run is. A failure is stated once, by the verb's own
      // "schemactl: error:" line (statement, file:line, SQLSTATE, where the
      // database is left): its progress line says only which revision
      // failed and when, and the operation's failed line is not printed.
      if (event.kind == Event::Kind::kStatementStarted ||
          (event.kind == Event::Kind::kOperationFinished && !event.status.ok())) {
        return;
      }
      if (event.kind == Event::Kind::kRevisionFinished && !event.status.ok()) {
        out_ << "[" << event.step_index + 1 << "/" << event.step_count << "] " << event.revision
             << " failed after " << DurationText(event.duration) << "\n"
             << std::flush;
        return;
      }
      out_ << engine::DescribeEvent(event) << "\n" << std::flush;
      return;
    case Mode::kJsonLines:
      out_ << JsonText(EventJson(event)) << "\n" << std::flush;
      return;
    case Mode::kLive:
      OnLiveEvent(event);
      return;
  }
}

std::string ProgressSink::MessageOf(const std::string& revision) const {
  const auto it = messages_.find(revision);
  return it == messages_.end() ? "" : it->second;
}

void ProgressSink::OnLiveEvent(const Event& event) {
  const absl::Time now = absl::Now();
  switch (event.kind) {
    case Event::Kind::kOperationStarted:
      for (const engine::PlannedStep& step : event.plan) {
        messages_[step.revision] = step.message;
      }
      if (!event.plan.empty()) {
        out_ << event.operation << (event.target.empty() ? "" : " ") << event.target << ": "
             << event.plan.size() << (event.plan.size() == 1 ? " revision" : " revisions") << "\n";
      }
      break;
    case Event::Kind::kWaitingForLock:
      showing_ = Showing::kLock;
      lock_holder_ = event.lock_holder;
      lock_since_ = now - event.waited;
      Redraw(now);
      break;
    case Event::Kind::kLockAcquired:
      if (showing_ == Showing::kLock) {
        ClearLine();
        showing_ = Showing::kNothing;
        out_ << "migration lock acquired after " << DurationText(event.waited) << "\n";
      }
      break;
    case Event::Kind::kRevisionStarted:
      ClearLine();
      showing_ = Showing::kRevision;
      revision_ = event.revision;
      direction_ = event.direction;
      step_index_ = event.step_index;
      step_count_ = event.step_count;
      statement_index_ = -1;
      statement_count_ = event.statement_count;
      revision_started_ = now;
      Redraw(now);
      break;
    case Event::Kind::kStatementStarted:
      statement_index_ = event.statement_index;
      statement_count_ = event.statement_count;
      Redraw(now);
      break;
    case Event::Kind::kRevisionFinished: {
      ClearLine();
      showing_ = Showing::kNothing;
      // The finished line keeps the count of statements, not the last one.
      const absl::Duration took =
          event.duration > absl::ZeroDuration() ? event.duration : now - revision_started_;
      std::string head =
          absl::StrCat("[", step_index_ + 1, "/", step_count_, "] ",
                       direction_ == engine::Direction::kDown ? "down " : "", revision_);
      std::string message = MessageOf(revision_);
      std::string tail =
          event.status.ok() ? absl::StrCat("  ", statement_count_,
                                           statement_count_ == 1 ? " statement  " : " statements  ",
                                           DurationText(took))
                            : absl::StrCat("  FAILED after ", DurationText(took));
      if (options_.width > 0) {
        const int room = options_.width - 1 - static_cast<int>(head.size() + tail.size()) - 1;
        message = room > 0 ? FitWidth(message, room) : "";
      }
      // Fitted first, painted after: the codes take no columns.
      out_ << Paint(head, event.status.ok() ? Color::kGreen : Color::kRed, options_.color)
           << (message.empty() ? "" : " ") << message
           << (event.status.ok() ? tail : Paint(tail, Color::kRed, options_.color)) << "\n"
           << std::flush;
      break;
    }
    case Event::Kind::kOperationFinished:
      ClearLine();
      showing_ = Showing::kNothing;
      out_ << std::flush;
      break;
  }
}

std::string ProgressSink::LiveLine(absl::Time now) const {
  if (showing_ == Showing::kLock) {
    return FitWidth(
        absl::StrCat("waiting for the migration lock", lock_holder_.empty() ? "" : ", held by ",
                     lock_holder_, "  ", DurationText(now - lock_since_)),
        options_.width - 1);
  }
  if (showing_ != Showing::kRevision) {
    return "";
  }
  std::string head = absl::StrCat("[", step_index_ + 1, "/", step_count_, "] ",
                                  direction_ == engine::Direction::kDown ? "down " : "", revision_);
  std::string message = MessageOf(revision_);
  std::string tail;
  if (statement_index_ >= 0) {
    absl::StrAppend(&tail, "  statement ", statement_index_ + 1, "/", statement_count_);
  }
  // Fixed width, so the message does not jitter as the clock grows.
  absl::StrAppend(&tail, "  ", absl::StrFormat("%6s", DurationText(now - revision_started_)));
  if (options_.width > 0) {
    // Keep the counters and the clock; shorten the message.
    const int room = options_.width - 1 - static_cast<int>(head.size() + tail.size()) - 1;
    message = room > 0 ? FitWidth(message, room) : "";
    if (room <= 0) {
      return FitWidth(absl::StrCat(head, tail), options_.width - 1);
    }
  }
  return absl::StrCat(head, message.empty() ? "" : " ", message, tail);
}

void ProgressSink::Redraw(absl::Time now) {
  const std::string line = LiveLine(now);
  out_ << '\r' << line << "\x1b[K" << std::flush;
  last_length_ = line.size() + 1;
}

void ProgressSink::ClearLine() {
  if (last_length_ > 0) {
    out_ << "\r\x1b[K" << std::flush;
    last_length_ = 0;
  }
}

void ProgressSink::TickerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::milliseconds(250));
    if (!stop_ && showing_ != Showing::kNothing) {
      Redraw(absl::Now());
    }
  }
}

namespace {

Json ChecksumIssuesJson(const std::vector<ChecksumIssue>& issues) {
  Json items = Json::array();
  for (const ChecksumIssue& issue : issues) {
    items.push_back(Json{{"kind", issue.kind},
                         {"revision", issue.revision},
                         {"path", issue.path},
                         {"recorded_checksum", issue.recorded_checksum},
                         {"current_checksum", issue.current_checksum}});
  }
  return items;
}

std::string ShortChecksum(const std::string& checksum) {
  return checksum.empty() ? std::string("none") : checksum.substr(0, 12);
}

}  // namespace

void PrintValidation(std::ostream& out, bool json, bool quiet, bool ok, int applied_checked,
                     const std::vector<ChecksumIssue>& issues, absl::string_view where) {
  if (json) {
    Json body;
    body["ok"] = ok;
    body["applied_checked"] = applied_checked;
    body["issues"] = ChecksumIssuesJson(issues);
    out << JsonText(body) << "\n";
    return;
  }
  std::vector<std::string> unrecorded;
  for (const ChecksumIssue& issue : issues) {
    if (issue.kind == "changed") {
      out << "changed       " << issue.revision << "  " << issue.path << "  (applied "
          << ShortChecksum(issue.recorded_checksum) << ", file now "
          << ShortChecksum(issue.current_checksum) << ")\n";
    } else if (issue.kind == "cosmetic") {
      out << "cosmetic      " << issue.revision << "  " << issue.path
          << "  (only comments, whitespace or letter case changed since it was applied; "
             "`schemactl repair` records the new checksum)\n";
    } else if (issue.kind == "missing_file") {
      out << "missing file  " << issue.revision << "  (applied, but no revision file in " << where
          << ")\n";
    } else {
      unrecorded.push_back(issue.revision);
    }
  }
  if (!unrecorded.empty() && !quiet) {
    out << "no checksum   " << absl::StrJoin(unrecorded, ", ")
        << "  (applied before schemad recorded checksums, e.g. by Alembic; `schemactl repair` "
           "records them)\n";
  }
  if (!quiet || !ok) {
    out << (ok ? "OK: " : "FAILED: ") << applied_checked << " applied revision(s) checked against "
        << where << "\n";
  }
}

void PrintRepair(std::ostream& out, bool json, const std::string& operation_id,
                 const std::vector<ChecksumIssue>& repaired,
                 const std::vector<ChecksumIssue>& not_repaired, absl::string_view where) {
  if (json) {
    Json body;
    body["operation_id"] = operation_id;
    body["repaired"] = ChecksumIssuesJson(repaired);
    body["not_repaired"] = ChecksumIssuesJson(not_repaired);
    out << JsonText(body) << "\n";
    return;
  }
  for (const ChecksumIssue& issue : repaired) {
    out << "repaired      " << issue.revision << "  " << issue.path << "  (" << issue.kind << ": "
        << ShortChecksum(issue.recorded_checksum) << " -> " << ShortChecksum(issue.current_checksum)
        << ")\n";
  }
  for (const ChecksumIssue& issue : not_repaired) {
    out << "not repaired  " << issue.revision << "  (applied, but no revision file in " << where
        << "; restore the file)\n";
  }
  if (repaired.empty() && not_repaired.empty()) {
    out << "nothing to repair: every applied revision matches its file in " << where << "\n";
  } else {
    out << repaired.size() << " checksum(s) re-recorded (operation " << operation_id << ")\n";
  }
}

}  // namespace schemad::cli
