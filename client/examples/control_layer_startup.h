// The start-up step of the example control layer (control_layer_main.cc),
// written against schemad::Client so that it is unit-tested without a server
// (control_layer_startup_test.cc, with the SDK's MockClientConnection).
#ifndef SCHEMAD_CLIENT_EXAMPLES_CONTROL_LAYER_STARTUP_H_
#define SCHEMAD_CLIENT_EXAMPLES_CONTROL_LAYER_STARTUP_H_

#include <ostream>
#include <string>

#include "absl/time/time.h"
#include "schemad/client.h"

namespace control_layer {

// True when `database` is at head within `deadline` (pending revisions are
// applied where the server allows it; an unreachable schemad or a busy lock
// is waited out); otherwise false, with the reason written to `log`.
inline bool SchemaReady(schemad::Client& client, const std::string& database,
                        absl::Duration deadline, std::ostream& log) {
  const absl::Status status = schemad::WaitForHead(client, database, deadline);
  if (!status.ok()) {
    log << "control layer: database " << database << " is not at head: " << status << "\n";
    return false;
  }
  log << "control layer: database " << database << " is at head; starting\n";
  return true;
}

}  // namespace control_layer

#endif  // SCHEMAD_CLIENT_EXAMPLES_CONTROL_LAYER_STARTUP_H_
