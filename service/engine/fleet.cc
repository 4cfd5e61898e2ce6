#include "service/engine/fleet.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace schemad::engine {

// ------------------------------------------------------------ LabelSelector

absl::StatusOr<LabelSelector> LabelSelector::Parse(absl::string_view text) {
  LabelSelector selector;
  selector.text_ = std::string(text);
  for (absl::string_view raw : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    absl::string_view term = absl::StripAsciiWhitespace(raw);
    Term t;
    size_t op = term.find("!=");
    size_t op_len = 2;
    if (op == absl::string_view::npos) {
      op = term.find('=');
      op_len = 1;
    } else {
      t.negated = true;
    }
    if (op == absl::string_view::npos) {
      // Presence test: `key` or `!key`.
      if (absl::ConsumePrefix(&term, "!")) {
        t.negated = true;
      }
      t.key = std::string(absl::StripAsciiWhitespace(term));
    } else {
      t.key = std::string(absl::StripAsciiWhitespace(term.substr(0, op)));
      for (absl::string_view v : absl::StrSplit(term.substr(op + op_len), '|')) {
        v = absl::StripAsciiWhitespace(v);
        if (v.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("selector term '", term, "' has an empty value"));
        }
        t.values.emplace_back(v);
      }
    }
    if (t.key.empty() || t.key.find_first_of("=!| ") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("selector term '", term, "' is not key=value, key!=value, key or !key"));
    }
    selector.terms_.push_back(std::move(t));
  }
  return selector;
}

bool LabelSelector::Matches(const FleetSite& site) const {
  for (const Term& t : terms_) {
    const std::string* value = nullptr;
    if (t.key == "name") {
      value = &site.name;
    } else if (auto it = site.labels.find(t.key); it != site.labels.end()) {
      value = &it->second;
    }
    bool holds;
    if (t.values.empty()) {
      holds = value != nullptr;
    } else {
      holds =
          value != nullptr && std::find(t.values.begin(), t.values.end(), *value) != t.values.end();
    }
    if (holds == t.negated) {
      return false;
    }
  }
  return true;
}

std::vector<FleetSite> LabelSelector::Filter(const std::vector<FleetSite>& sites) const {
  std::vector<FleetSite> out;
  for (const FleetSite& site : sites) {
    if (Matches(site)) {
      out.push_back(site);
    }
  }
  return out;
}

// ------------------------------------------------------------------ names

absl::string_view OutcomeName(SiteResult::Outcome outcome) {
  switch (outcome) {
    case SiteResult::Outcome::kSucceeded:
      return "succeeded";
    case SiteResult::Outcome::kFailed:
      return "failed";
    case SiteResult::Outcome::kSkipped:
      return "skipped";
    case SiteResult::Outcome::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

absl::string_view FleetEventKindName(FleetEvent::Kind kind) {
  switch (kind) {
    case FleetEvent::Kind::kStageStarted:
      return "stage_started";
    case FleetEvent::Kind::kSiteQueued:
      return "site_queued";
    case FleetEvent::Kind::kSiteStarted:
      return "site_started";
    case FleetEvent::Kind::kSiteEvent:
      return "site_event";
    case FleetEvent::Kind::kSiteFinished:
      return "site_finished";
    case FleetEvent::Kind::kSiteFailed:
      return "site_failed";
    case FleetEvent::Kind::kSiteSkipped:
      return "site_skipped";
    case FleetEvent::Kind::kFinished:
      return "finished";
  }
  return "unknown";
}

// ------------------------------------------------------------ SiteContext

void SiteContext::SetCanceller(std::function<void()> canceller) {
  std::lock_guard<std::mutex> lock(mu_);
  canceller_ = std::move(canceller);
  if (cancelled_.load() && canceller_) {
    canceller_();
  }
}

void SiteContext::Cancel() {
  if (cancelled_.exchange(true)) {
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (canceller_) {
    canceller_();
  }
}

// ------------------------------------------------------------- FleetRunner

namespace {

// Serialises calls into the caller's sink.
class SerialSink {
 public:
  explicit SerialSink(FleetEventSink* sink) : sink_(sink) {}
  void Emit(FleetEvent event) {
    if (sink_ == nullptr) {
      return;
    }
    event.time = absl::Now();
    std::lock_guard<std::mutex> lock(mu_);
    sink_->OnFleetEvent(event);
  }

 private:
  FleetEventSink* sink_;
  std::mutex mu_;
};

}  // namespace

// Forwards a site's executor events as kSiteEvent, tagged with the site.
class SiteContext::TaggingSink : public EventSink {
 public:
  TaggingSink(std::string site, SerialSink* out) : site_(std::move(site)), out_(out) {}
  void OnEvent(const Event& event) override {
    FleetEvent e;
    e.kind = FleetEvent::Kind::kSiteEvent;
    e.site = site_;
    e.event = event;
    out_->Emit(std::move(e));
  }

 private:
  std::string site_;
  SerialSink* out_;
};

FleetRunner::FleetRunner(FleetOptions options) : options_(std::move(options)) {}

absl::Status FleetRunner::Validate(const std::vector<FleetSite>& sites) const {
  if (options_.max_parallel < 1) {
    return absl::InvalidArgumentError("max_parallel must be at least 1");
  }
  if (options_.canary_count < 0) {
    return absl::InvalidArgumentError("canary count must not be negative");
  }
  if (options_.site_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("site timeout must not be negative");
  }
  if (!options_.canary_selector.empty()) {
    absl::StatusOr<LabelSelector> canary = LabelSelector::Parse(options_.canary_selector);
    if (!canary.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("canary selector: ", canary.status().message()));
    }
    if (canary->Filter(sites).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("canary selector '", options_.canary_selector,
                                                     "' selects none of the sites"));
    }
  }
  return absl::OkStatus();
}

FleetSummary FleetRunner::Run(const std::vector<FleetSite>& sites, const SiteWork& work,
                              FleetEventSink* sink, const std::atomic<bool>* cancelled) const {
  const absl::Time started = absl::Now();
  SerialSink out(sink);
  FleetSummary summary;
  summary.sites.resize(sites.size());
  for (size_t i = 0; i < sites.size(); ++i) {
    summary.sites[i].site = sites[i].name;
  }

  // Stages: canary sites first (by selector or the first K), then the rest.
  std::vector<size_t> canary;
  std::vector<size_t> rest;
  absl::StatusOr<LabelSelector> canary_selector = LabelSelector::Parse(options_.canary_selector);
  for (size_t i = 0; i < sites.size(); ++i) {
    const bool is_canary = !options_.canary_selector.empty()
                               ? (canary_selector.ok() && canary_selector->Matches(sites[i]))
                               : static_cast<int>(i) < options_.canary_count;
    (is_canary ? canary : rest).push_back(i);
  }
  if (canary.size() == sites.size() && options_.canary_selector.empty()) {
    // A canary stage of everything is just a rollout.
    rest = std::move(canary);
    canary.clear();
  }
  for (const FleetSite& site : sites) {
    FleetEvent e;
    e.kind = FleetEvent::Kind::kSiteQueued;
    e.site = site.name;
    out.Emit(std::move(e));
  }

  std::mutex mu;
  bool stop = false;  // a failure under stop-on-error, or a failed canary
  std::string stop_reason;
  std::vector<SiteContext*> running;

  auto skip = [&](size_t i, absl::Status why) {
    SiteResult& r = summary.sites[i];
    r.outcome = SiteResult::Outcome::kSkipped;
    r.status = std::move(why);
    FleetEvent e;
    e.kind = FleetEvent::Kind::kSiteSkipped;
    e.site = r.site;
    e.result = r;
    out.Emit(std::move(e));
  };
  auto is_cancelled = [&]() { return cancelled != nullptr && cancelled->load(); };

  auto run_site = [&](size_t i, const std::string& stage) {
    auto ctx = std::unique_ptr<SiteContext>(new SiteContext());
    SiteContext::TaggingSink tagging(sites[i].name, &out);
    ctx->control_.sink = &tagging;
    ctx->control_.cancelled = &ctx->cancelled_;
    const absl::Time site_start = absl::Now();
    const absl::Time deadline = options_.site_timeout > absl::ZeroDuration()
                                    ? site_start + options_.site_timeout
                                    : absl::InfiniteFuture();
    {
      std::lock_guard<std::mutex> lock(mu);
      running.push_back(ctx.get());
    }
    FleetEvent start_event;
    start_event.kind = FleetEvent::Kind::kSiteStarted;
    start_event.site = sites[i].name;
    out.Emit(std::move(start_event));

    // Watchdog for this site: fleet cancel and the per-site timeout.
    std::atomic<bool> done{false};
    std::atomic<bool> timed_out{false};
    std::thread watchdog([&]() {
      while (!done.load()) {
        if (is_cancelled()) {
          ctx->Cancel();
        } else if (absl::Now() >= deadline && !timed_out.load()) {
          timed_out.store(true);
          ctx->Cancel();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    absl::StatusOr<SiteResult> result = work(sites[i], *ctx);
    done.store(true);
    watchdog.join();
    {
      std::lock_guard<std::mutex> lock(mu);
      running.erase(std::find(running.begin(), running.end(), ctx.get()));
    }

    SiteResult r;
    if (result.ok() && !result->status.ok()) {
      // A failure the work could still read the site's rows after.
      r = *std::move(result);
      result = r.status;
      r.outcome = SiteResult::Outcome::kFailed;
    }
    if (result.ok()) {
      r = *std::move(result);
      r.outcome = SiteResult::Outcome::kSucceeded;
      r.status = absl::OkStatus();
      r.rows_after_read = true;
    } else if (timed_out.load()) {
      r.outcome = SiteResult::Outcome::kFailed;
      r.status = absl::DeadlineExceededError(
          absl::StrCat("site timed out after ", absl::FormatDuration(options_.site_timeout), ": ",
                       result.status().message()));
    } else if (result.status().code() == absl::StatusCode::kCancelled || is_cancelled()) {
      r.outcome = SiteResult::Outcome::kCancelled;
      r.status = result.status();
    } else {
      r.outcome = SiteResult::Outcome::kFailed;
      r.status = result.status();
    }
    r.site = sites[i].name;
    r.duration = absl::Now() - site_start;
    summary.sites[i] = r;
    FleetEvent e;
    e.kind = r.outcome == SiteResult::Outcome::kSucceeded ? FleetEvent::Kind::kSiteFinished
                                                          : FleetEvent::Kind::kSiteFailed;
    e.site = r.site;
    e.result = r;
    out.Emit(std::move(e));
    if (r.outcome == SiteResult::Outcome::kFailed && !options_.continue_on_error) {
      std::lock_guard<std::mutex> lock(mu);
      if (!stop) {
        stop = true;
        stop_reason = stage == "canary"
                          ? absl::StrCat("not started: canary site ", r.site, " failed")
                          : absl::StrCat("not started: site ", r.site,
                                         " failed and the fleet stops on the first failure");
      }
    }
  };

  auto run_stage = [&](const std::string& stage, const std::vector<size_t>& members) {
    if (members.empty()) {
      return;
    }
    FleetEvent e;
    e.kind = FleetEvent::Kind::kStageStarted;
    e.stage = stage;
    for (size_t i : members) {
      e.stage_sites.push_back(sites[i].name);
    }
    out.Emit(std::move(e));
    size_t next = 0;
    auto worker = [&]() {
      while (true) {
        size_t i;
        absl::Status why;
        {
          std::lock_guard<std::mutex> lock(mu);
          if (next >= members.size()) {
            return;
          }
          i = members[next++];
          if (is_cancelled()) {
            why = absl::CancelledError("not started: the fleet operation was cancelled");
          } else if (stop) {
            why = absl::AbortedError(stop_reason);
          }
        }
        if (!why.ok()) {
          skip(i, why);
          continue;
        }
        run_site(i, stage);
      }
    };
    const int threads = std::min<int>(options_.max_parallel, static_cast<int>(members.size()));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back(worker);
    }
    for (std::thread& t : pool) {
      t.join();
    }
  };

  run_stage("canary", canary);
  for (size_t i : canary) {
    if (summary.sites[i].outcome != SiteResult::Outcome::kSucceeded) {
      std::lock_guard<std::mutex> lock(mu);
      if (!stop) {
        stop = true;
        stop_reason = absl::StrCat("not started: canary site ", sites[i].name, " ",
                                   OutcomeName(summary.sites[i].outcome));
      }
    }
  }
  run_stage("rollout", rest);

  for (const SiteResult& r : summary.sites) {
    switch (r.outcome) {
      case SiteResult::Outcome::kSucceeded:
        ++summary.succeeded;
        break;
      case SiteResult::Outcome::kFailed:
        ++summary.failed;
        break;
      case SiteResult::Outcome::kSkipped:
        ++summary.skipped;
        break;
      case SiteResult::Outcome::kCancelled:
        ++summary.cancelled;
        break;
    }
  }
  summary.duration = absl::Now() - started;
  FleetEvent e;
  e.kind = FleetEvent::Kind::kFinished;
  e.summary = summary;
  out.Emit(std::move(e));
  return summary;
}

}  // namespace schemad::engine
