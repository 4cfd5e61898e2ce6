// Fleet operations: one action over many site databases, with a label
// selector, bounded parallelism, a canary stage, a failure policy and per-site
// timeouts; every site's events tagged by site, plus fleet-level events and a
// final summary. Per-site results are independent: an unreachable, locked or
// failing site does not stop the others (unless the policy says stop starting
// new sites).
//
//   ASSIGN_OR_RETURN(LabelSelector selector, LabelSelector::Parse("region=eu,env!=test"));
//   FleetRunner runner(options);
//   FleetSummary summary = runner.Run(selector.Filter(sites), work, &sink, &cancelled);
//
// The runner knows nothing of databases: `work` does one site (open it, run
// the executor) and reports through the SiteContext it is given. Connection
// use is bounded by max_parallel: at most that many sites run at once.
//
// Thread-safety: Run may be called from any thread; it blocks until every
// started site has finished. `work` runs on the runner's worker threads, at
// most max_parallel at a time. The sink is called from those threads, one
// event at a time (the runner serialises calls).
#ifndef SCHEMAD_SERVICE_ENGINE_FLEET_H_
#define SCHEMAD_SERVICE_ENGINE_FLEET_H_

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/engine/events.h"
#include "service/engine/executor.h"

namespace schemad::engine {

struct FleetSite {
  std::string name;
  std::map<std::string, std::string> labels;
};

// Comma-separated terms, all of which must hold:
//   key=value   key!=value   key (label present)   !key (label absent)
//   name=site-a|site-b        (the site's name; `|` separates alternatives,
//                              also for labels: region=eu|us)
// The empty selector selects every site.
class LabelSelector {
 public:
  // INVALID_ARGUMENT naming the term that is malformed.
  static absl::StatusOr<LabelSelector> Parse(absl::string_view text);
  bool Matches(const FleetSite& site) const;
  std::vector<FleetSite> Filter(const std::vector<FleetSite>& sites) const;
  const std::string& text() const { return text_; }

 private:
  struct Term {
    std::string key;
    std::vector<std::string> values;  // empty: presence test
    bool negated = false;
  };
  std::vector<Term> terms_;
  std::string text_;
};

struct FleetOptions {
  int max_parallel = 4;            // sites running at once (>= 1)
  int canary_count = 0;            // first K sites form the canary stage
  std::string canary_selector;     // or: sites matching this form it
  bool continue_on_error = false;  // false: stop starting sites on the first failure
  absl::Duration site_timeout = absl::ZeroDuration();  // 0: none
};

struct SiteResult {
  enum class Outcome { kSucceeded, kFailed, kSkipped, kCancelled };
  std::string site;
  Outcome outcome = Outcome::kSkipped;
  std::vector<std::string> rows_before;
  std::vector<std::string> rows_after;
  // rows_after holds the site's rows: set for a success, and for a failure
  // when its work could read them afterwards (a SiteWork reports such a
  // failure as a SiteResult whose status is not OK).
  bool rows_after_read = false;
  int revisions_run = 0;
  absl::Duration duration = absl::ZeroDuration();
  absl::Status status;  // why it failed, was skipped or cancelled
  std::string operation_id;
};
absl::string_view OutcomeName(SiteResult::Outcome outcome);

struct FleetSummary {
  std::vector<SiteResult> sites;  // in the order the sites were given
  int succeeded = 0;
  int failed = 0;
  int skipped = 0;
  int cancelled = 0;
  absl::Duration duration = absl::ZeroDuration();
  bool ok() const { return failed == 0 && cancelled == 0; }
};

struct FleetEvent {
  enum class Kind {
    kStageStarted,  // stage ("canary", "rollout"), sites
    kSiteQueued,
    kSiteStarted,
    kSiteEvent,     // event: the site's own operation event
    kSiteFinished,  // result
    kSiteFailed,    // result
    kSiteSkipped,   // result (status says why)
    kFinished,      // summary
  };
  Kind kind = Kind::kStageStarted;
  absl::Time time = absl::InfinitePast();
  std::string stage;
  std::vector<std::string> stage_sites;
  std::string site;
  Event event;
  SiteResult result;
  FleetSummary summary;
};
absl::string_view FleetEventKindName(FleetEvent::Kind kind);

class FleetEventSink {
 public:
  virtual ~FleetEventSink() = default;
  virtual void OnFleetEvent(const FleetEvent& event) = 0;
};

// What `work` gets for one site.
class SiteContext {
 public:
  // Pass as the executor's CallControl (sink tags events with the site).
  const CallControl& control() const { return control_; }
  // Registers how to interrupt the site's running statement (for example
  // Session::Cancel); called when the fleet is cancelled or the site times out.
  void SetCanceller(std::function<void()> canceller);
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class FleetRunner;
  class TaggingSink;
  SiteContext() = default;
  void Cancel();

  std::atomic<bool> cancelled_{false};
  CallControl control_;
  std::mutex mu_;
  std::function<void()> canceller_;
};

class FleetRunner {
 public:
  // One site's work; the result's outcome is taken from the status (OK:
  // succeeded, CANCELLED: cancelled, else failed).
  using SiteWork = std::function<absl::StatusOr<SiteResult>(const FleetSite&, SiteContext&)>;

  explicit FleetRunner(FleetOptions options);

  // INVALID_ARGUMENT for bad options (max_parallel < 1, canary selector that
  // does not parse or selects nothing while set).
  absl::Status Validate(const std::vector<FleetSite>& sites) const;

  // Runs `work` over `sites`: the canary stage first (must all succeed, else
  // the rest are skipped), then the rest, at most max_parallel at a time.
  // `cancelled` (may be null) stops queued sites from starting and cancels
  // running ones.
  FleetSummary Run(const std::vector<FleetSite>& sites, const SiteWork& work, FleetEventSink* sink,
                   const std::atomic<bool>* cancelled) const;

 private:
  FleetOptions options_;
};

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_FLEET_H_
