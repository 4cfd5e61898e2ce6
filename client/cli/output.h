// What schemactl prints: revision lines and entries in `alembic history`'s
// format, JSON shapes, durations, and the progress display (an EventSink).
//
//   ProgressSink sink(std::cerr, {ProgressSink::Mode::kLive, 100, &graph, true});
//   executor.Upgrade(*session, "heads", {.sink = &sink});
//
//   out << FormatRevisionLine(graph, index, LineFormat::History()) << "\n";
//
// Thread-safety: the functions are stateless. A ProgressSink serialises its
// own output (the executor thread and, in live mode, its ticker thread).
#ifndef SCHEMAD_CLIENT_CLI_OUTPUT_H_
#define SCHEMAD_CLIENT_CLI_OUTPUT_H_

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "service/engine/events.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"

namespace schemad::cli {

// Key order is kept as written, so `plan --json` starts with "steps".
using Json = nlohmann::ordered_json;

// Which parts of Alembic's one-line revision format (Script._head_only) to show.
struct LineFormat {
  bool parents = false;    // "parent -> rev" (with "(deps)" after the parent)
  bool labels = false;     // " (label, ...)"
  bool head_marks = true;  // " (head)", " (effective head)", " (current)"
  bool tree_marks = true;  // " (branchpoint)", " (mergepoint)"
  bool message = false;    // ", message"

  static LineFormat History() { return {true, true, true, true, true}; }
  static LineFormat Heads() { return {false, true, true, false, false}; }
  static LineFormat Current() { return {false, false, true, true, false}; }
};

// One revision as `alembic history` prints it:
//   "1c9e8b7a6f5d -> 3f2a9c1b7d4e (timeseries) (head), Add sensor_data table".
// `current` adds " (current)".
std::string FormatRevisionLine(const engine::RevisionGraph& graph, int index,
                               const LineFormat& format, bool current = false);

// Extra lines of a verbose entry that come from a database.
struct AppliedInfo {
  bool applied = false;
  std::optional<absl::Time> applied_at;  // from schemad_history, when recorded
  std::optional<absl::Duration> duration;
  std::string who;
};

// A multi-line entry as `alembic history --verbose` / `alembic show` print it
// (Rev, Parent or Merges, Also depends on, Branches into, Branch names, Path),
// plus schemad's fields (Created, Transactional, timeouts, statements,
// checksum) and, with `applied`, the database's record. Ends with a blank line.
std::string FormatLogEntry(const engine::RevisionGraph& graph, int index, bool current = false,
                           const AppliedInfo* applied = nullptr);

// The JSON object of one revision (see docs/cli.md, "revision object").
Json RevisionJson(const engine::RevisionGraph& graph, int index);

// A checksum problem of one applied revision, as `validate` and `repair`
// print it in both modes (engine::ValidationIssue or the SDK's, converted).
struct ChecksumIssue {
  std::string kind;  // "changed", "cosmetic", "missing_file", "no_checksum"
  std::string revision;
  std::string path;
  std::string recorded_checksum;  // "" when none was recorded
  std::string current_checksum;   // the file's
};

// Prints a validation: with --json {"ok", "applied_checked", "issues": [...]}
// on `out`; else a line per issue and "OK:"/"FAILED:" (unless `quiet` and
// ok). `where` says where the files are: "migrations/modax", "the server".
void PrintValidation(std::ostream& out, bool json, bool quiet, bool ok, int applied_checked,
                     const std::vector<ChecksumIssue>& issues, absl::string_view where);

// Prints what `repair` did: with --json {"operation_id", "repaired": [...],
// "not_repaired": [...]} on `out`; else a line per revision and a summary.
void PrintRepair(std::ostream& out, bool json, const std::string& operation_id,
                 const std::vector<ChecksumIssue>& repaired,
                 const std::vector<ChecksumIssue>& not_repaired, absl::string_view where);

// engine::HumanDuration: "350 ms", "1.23 s", "2 min 03 s", "1 h 02 min".
std::string DurationText(absl::Duration duration);
// "2025-12-09T14:00:03Z" (UTC, seconds).
std::string TimeText(absl::Time time);
// "2025-12-09T14:00:03.125Z" (UTC, milliseconds): times in JSON output.
std::string JsonTimeText(absl::Time time);
double Milliseconds(absl::Duration duration);

// The one way schemactl writes JSON: compact, one line. Strings that are not
// valid UTF-8 (text from databases, servers and files schemactl does not
// control) get U+FFFD for each invalid part instead of aborting the output.
std::string JsonText(const Json& json);

// `{"code":"FAILED_PRECONDITION","message":"...","exit_code":1}`.
Json StatusJson(const absl::Status& status, int exit_code);

// One event as a JSON object (the `--json` progress lines on stderr).
Json EventJson(const engine::Event& event);

// Cuts `text` to at most `width` bytes without splitting a UTF-8 sequence;
// width <= 0 leaves it whole.
std::string FitWidth(absl::string_view text, int width);

// The progress display of upgrade, downgrade, stamp, ensure-head, resolve.
// Colour for people at a terminal (ANSI SGR): `text` wrapped in the code of
// `color` and a reset when `enabled`, else `text` as it is. Whether it is
// enabled is decided once, in main (--color, NO_COLOR, a terminal).
enum class Color { kRed, kGreen, kYellow, kBold };
std::string Paint(absl::string_view text, Color color, bool enabled);

class ProgressSink final : public engine::EventSink {
 public:
  enum class Mode {
    kNone,       // print nothing (--quiet)
    kLive,       // one line per revision, updated in place with '\r' (a terminal)
    kPlain,      // one line per event, never rewritten (logs, pipes)
    kJsonLines,  // one JSON object per event (--json)
  };
  struct Options {
    Mode mode = Mode::kPlain;
    int width = 0;        // terminal columns (kLive); 0: unknown
    bool ticker = false;  // kLive: redraw the elapsed time every 250ms between events
    bool color = false;   // kLive: a failed revision in red, a finished one in green
  };

  ProgressSink(std::ostream& out, Options options);
  ~ProgressSink() override;
  ProgressSink(const ProgressSink&) = delete;
  ProgressSink& operator=(const ProgressSink&) = delete;

  // Clears a live line that is still showing (also done by the destructor).
  void Finish();

  // engine::EventSink:
  void OnEvent(const engine::Event& event) override;

 private:
  void OnLiveEvent(const engine::Event& event);
  std::string LiveLine(absl::Time now) const;                // requires mu_
  std::string MessageOf(const std::string& revision) const;  // requires mu_
  void Redraw(absl::Time now);                               // requires mu_
  void ClearLine();                                          // requires mu_
  void TickerLoop();

  std::ostream& out_;
  const Options options_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  // Live state.
  enum class Showing { kNothing, kLock, kRevision };
  Showing showing_ = Showing::kNothing;
  std::string lock_holder_;
  absl::Time lock_since_ = absl::InfinitePast();
  // Each planned revision's message, from kOperationStarted's plan (the
  // same in direct mode and through a server).
  std::map<std::string, std::string> messages_;
  std::string revision_;
  engine::Direction direction_ = engine::Direction::kUp;
  int step_index_ = 0;
  int step_count_ = 0;
  int statement_index_ = -1;
  int statement_count_ = 0;
  absl::Time revision_started_ = absl::InfinitePast();
  size_t last_length_ = 0;
  std::thread ticker_;
};

}  // namespace schemad::cli

#endif  // SCHEMAD_CLIENT_CLI_OUTPUT_H_
