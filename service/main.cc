// schemad: the schema-migration service. Wiring only: flags, configuration,
// logging, signals; everything else is service/server/.
//
//   schemad --config /etc/schemad/schemad.yaml [--listen 127.0.0.1:0] [--log-level debug]
//   schemad --config schemad.yaml --check-config     # validate, load the sets, exit
//
// Prints "schemad listening on HOST:PORT" on stdout once it serves. SIGTERM or
// SIGINT starts a graceful shutdown (see docs/service.md); a second one
// cancels the running operations at once. SIGHUP reloads the configuration
// (SchemadServer::Reload; a bad one is logged and the running one kept). Exit codes: 0 clean
// shutdown, 1 shutdown with operations that did not stop, 2 bad flags or configuration (including
// an unauthenticated server on a non-loopback address without insecure_allow_unauthenticated), 3
// could not start (listen address in use or not of this host).
//
// Logs go to stderr as logfmt lines, or JSON objects with `log_format: json`.
#include <pthread.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "service/server/config.h"
#include "service/server/log_format.h"
#include "service/server/server.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUnclean = 1;
constexpr int kExitConfig = 2;
constexpr int kExitStart = 3;

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string listen;
  std::string log_level = "info";
  bool check_config = false;
  CLI::App app("schemad: schema-migration service for PostgreSQL", "schemad");
  app.add_option("--config", config_path, "configuration file (YAML)")->required();
  app.add_option("--listen", listen, "listen address, overriding the config's `listen`");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_flag("--check-config", check_config,
               "validate the configuration and load the migration sets, then exit");
  app.set_version_flag("--version", SCHEMAD_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitConfig;
  }

  // Block the shutdown and reload signals in every thread (gRPC's and ours
  // inherit the mask); the main thread takes them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigset_t reload_and_stop = signals;
  sigaddset(&reload_and_stop, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &reload_and_stop, nullptr);

  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
      "%Y-%m-%dT%H:%M:%S.%fZ level=%l logger=%n %v", spdlog::pattern_time_type::utc));
  schemad::server::ServerOptions options;
  options.log_sinks.push_back(sink);
  options.log_level = spdlog::level::from_str(log_level);
  options.listen_override = listen;
  options.config_path = config_path;
  // Type=notify units: RELOADING=1 / READY=1 around a reload (no-op without
  // NOTIFY_SOCKET).
  options.notify = [](const std::string& message) { sd_notify(0, message.c_str()); };

  absl::StatusOr<schemad::server::LoadedConfig> config =
      schemad::server::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::cerr << "schemad: " << config.status().message() << "\n";
    return kExitConfig;
  }
  if (config->proto.log_format() == "json") {
    sink->set_formatter(std::make_unique<schemad::server::JsonLogFormatter>());
  }
  if (check_config) {
    // The configured address was checked by LoadConfigFile; a --listen too.
    if (!listen.empty()) {
      absl::Status exposure = schemad::server::CheckListenExposure(config->proto, listen);
      if (!exposure.ok()) {
        std::cerr << "schemad: " << exposure.message() << "\n";
        return kExitConfig;
      }
    }
    for (const std::string& warning : config->warnings) {
      std::cerr << "schemad: warning: " << warning << "\n";
    }
    options.log_sinks.clear();
    options.listen_override = "127.0.0.1:0";
    options.check_only = true;
  }
  absl::StatusOr<std::unique_ptr<schemad::server::SchemadServer>> server =
      schemad::server::SchemadServer::Start(*std::move(config), options);
  if (!server.ok()) {
    std::cerr << "schemad: " << server.status().message() << "\n";
    return server.status().code() == absl::StatusCode::kUnavailable ? kExitStart : kExitConfig;
  }
  if (check_config) {
    (*server)->Shutdown(absl::ZeroDuration());
    std::cout << "schemad: configuration OK\n";
    return kExitOk;
  }
  std::cout << "schemad listening on " << (*server)->address() << std::endl;
  // Type=notify units: ready once the port is bound and the pools are warming
  // (no-op without NOTIFY_SOCKET).
  sd_notifyf(0, "READY=1\nSTATUS=serving on %s", (*server)->address().c_str());
  // WatchdogSec= in the unit: ping at half the interval for as long as the
  // operation registry answers (its lock is the one every RPC that starts,
  // lists or cancels an operation takes: a deadlock there stops the pings and
  // systemd restarts schemad). No-op without WATCHDOG_USEC.
  uint64_t watchdog_usec = 0;
  absl::Notification stop_watchdog;
  std::thread watchdog;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    watchdog = std::thread([&] {
      const absl::Duration period = absl::Microseconds(static_cast<int64_t>(watchdog_usec / 2));
      do {
        (void)(*server)->operations().running();
        sd_notify(0, "WATCHDOG=1");
      } while (!stop_watchdog.WaitForNotificationWithTimeout(period));
    });
  }

  spdlog::logger log("main", sink);
  int signal_number = 0;
  for (;;) {
    sigwait(&reload_and_stop, &signal_number);
    if (signal_number != SIGHUP) {
      break;
    }
    log.info("signal={} reloading the configuration", signal_number);
    (void)(*server)->Reload();  // logs and counts its outcome itself
  }
  sd_notify(0, "STOPPING=1\nSTATUS=stopping: running operations finish or roll back");
  log.info("signal={} starting graceful shutdown", signal_number);
  std::atomic<bool> done{false};
  std::thread shutdown([&] {
    (*server)->Shutdown();
    done = true;
  });
  // A second signal while shutting down: cancel the running operations now.
  const timespec poll{0, 100 * 1000 * 1000};
  while (!done) {
    if (sigtimedwait(&signals, nullptr, &poll) > 0) {
      log.warn("second signal: cancelling running operations now");
      (*server)->CancelAllOperations();
    }
  }
  shutdown.join();
  stop_watchdog.Notify();
  if (watchdog.joinable()) {
    watchdog.join();
  }
  const bool clean = (*server)->clean_shutdown();
  server->reset();
  return clean ? kExitOk : kExitUnclean;
}
