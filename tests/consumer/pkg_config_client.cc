// Built by tests/consumer/consumer_test.sh with nothing but
// `pkg-config --cflags --libs schemad-client`: asks a schemad for one
// database's status and prints its state ("at-head", "behind", ...).
//
//   pkg_config_client HOST:PORT DATABASE
#include <iostream>
#include <memory>

#include "schemad/client.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: pkg_config_client HOST:PORT DATABASE\n";
    return 2;
  }
  schemad::ClientOptions options;
  options.target = argv[1];
  absl::StatusOr<std::unique_ptr<schemad::Client>> client = schemad::Client::Connect(options);
  if (!client.ok()) {
    std::cerr << "pkg_config_client: " << client.status() << "\n";
    return 1;
  }
  absl::StatusOr<schemad::DatabaseStatus> status = (*client)->GetStatus(argv[2]);
  if (!status.ok()) {
    std::cerr << "pkg_config_client: " << status.status() << "\n";
    return 1;
  }
  std::cout << schemad::ToString(status->state) << "\n";
  return 0;
}
