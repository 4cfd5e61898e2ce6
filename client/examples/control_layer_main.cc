// Example: the first lines of a MODAX control layer's main. Before serving,
// it makes sure its database schema is at head through schemad, and exits
// non-zero (so the orchestrator restarts or alerts) when that fails.
//
//   export SCHEMAD_SERVER=schemad.ops:50051 SCHEMAD_TOKEN=...
//   control_layer_example --database site-a --deadline-seconds 300
//
// Exit codes: 0 at head (then the real program would start serving), 1 the
// schema could not be brought to head (message on stderr), 2 bad arguments.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "control_layer_startup.h"
#include "schemad/client.h"

int main(int argc, char** argv) {
  std::string database;
  int deadline_seconds = 300;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--database" && i + 1 < argc) {
      database = argv[++i];
    } else if (arg == "--deadline-seconds" && i + 1 < argc) {
      deadline_seconds = std::atoi(argv[++i]);
    } else if (arg == "--server" && i + 1 < argc) {
      setenv("SCHEMAD_SERVER", argv[++i], 1);
    } else {
      std::cerr << "usage: control_layer_example --database NAME [--server HOST:PORT] "
                   "[--deadline-seconds N]\n";
      return 2;
    }
  }
  if (database.empty()) {
    std::cerr << "control_layer_example: --database is required\n";
    return 2;
  }

  schemad::ClientOptions options = schemad::ClientOptions::FromEnvironment();
  if (options.who.empty()) {
    options.who = "control-layer " + database;
  }
  const absl::Duration deadline = absl::Seconds(deadline_seconds);
  options.retry.max_elapsed = deadline;
  absl::StatusOr<std::unique_ptr<schemad::Client>> client =
      schemad::Client::Connect(std::move(options));
  if (!client.ok()) {
    std::cerr << "control layer: " << client.status() << "\n";
    return 1;
  }
  if (!control_layer::SchemaReady(**client, database, deadline, std::cerr)) {
    return 1;
  }
  // ... the control layer's real work starts here ...
  return 0;
}
