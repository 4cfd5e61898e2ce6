// The SDK's connection attempts: a server whose connection handshake takes
// longer than the retry policy's backoff is still reached. A real in-process
// server on 127.0.0.1:0 behind a loopback relay that holds the server's first
// bytes back (the HTTP/2 handshake of a slow or distant server, or one whose
// TLS handshake takes a while). No database: ListOperations needs none.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemad/client.h"
#include "service/server/config.h"
#include "service/server/server.h"
#include "tests/testing/status_matchers.h"

namespace schemad {
namespace {

// Forwards connections from its own loopback port to `target_port`, holding
// back everything the target sends on a connection for `hold` first.
class DelayingRelay {
 public:
  DelayingRelay(int target_port, absl::Duration hold) : target_port_(target_port), hold_(hold) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listener_, 8) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "relay: cannot listen";
      return;
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~DelayingRelay() {
    stop_ = true;
    shutdown(listener_, SHUT_RDWR);
    close(listener_);
    acceptor_.join();
    for (std::thread& t : pipes_) {
      t.join();
    }
  }
  int port() const { return port_; }

 private:
  void Accept() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) {
        continue;
      }
      const int client = accept(listener_, nullptr, nullptr);
      if (client < 0) {
        continue;
      }
      const int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(server);
        continue;
      }
      pipes_.emplace_back([this, client, server] { Pipe(client, server); });
    }
  }

  // Copies both ways until either side closes or the relay stops; the
  // target's bytes only once `hold_` has passed since the connection.
  void Pipe(int client, int server) {
    const absl::Time release = absl::Now() + hold_;
    char buffer[16384];
    bool open = true;
    while (open && !stop_) {
      const bool held = absl::Now() < release;
      pollfd p[2] = {{client, POLLIN, 0}, {server, static_cast<short>(held ? 0 : POLLIN), 0}};
      if (poll(p, 2, 10) < 0) {
        break;
      }
      for (int i = 0; i < 2 && open; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
          continue;
        }
        const ssize_t n = read(p[i].fd, buffer, sizeof(buffer));
        open = n > 0 && write(i == 0 ? server : client, buffer, static_cast<size_t>(n)) == n;
      }
    }
    close(client);
    close(server);
  }

  int target_port_;
  absl::Duration hold_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> pipes_;  // touched by the acceptor thread only, joined after it
};

std::unique_ptr<server::SchemadServer> StartServer(const std::string& dir) {
  server::ConfigSources sources;
  sources.base_dir = dir;
  sources.getenv = [](const std::string&) -> std::optional<std::string> {
    return "postgresql://nobody@127.0.0.1:1/none";  // never connected to here
  };
  absl::StatusOr<server::LoadedConfig> config = server::ParseConfig(
      "listen: 127.0.0.1:0\n"
      "migration_sets: [{name: modax, directory: .}]\n"
      "databases: [{name: site-a, migration_set: modax, dsn_env: SITE_A_DSN}]\n",
      sources);
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) {
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<server::SchemadServer>> started =
      server::SchemadServer::Start(*std::move(config), server::ServerOptions{});
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? *std::move(started) : nullptr;
}

// A connection attempt used to get only the retry policy's initial backoff
// (100 ms: GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is also gRPC's minimum connect
// timeout), so a handshake slower than that failed with UNAVAILABLE "tcp
// handshaker shutdown"; seen as flaky server tests under AddressSanitizer.
TEST(SdkConnectTest, SlowHandshakeIsNotAFailure) {
  char tmpl[] = "/tmp/schemad_sdk_connect_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::unique_ptr<server::SchemadServer> server = StartServer(tmpl);
  ASSERT_NE(server, nullptr);
  DelayingRelay relay(server->port(), absl::Milliseconds(600));

  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", relay.port());
  options.retry.enabled = false;  // the first attempt must be the one that works
  options.default_deadline = absl::Seconds(20);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  ASSERT_OK(client);
  const absl::Time start = absl::Now();
  EXPECT_OK((*client)->ListOperations());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(600));  // it did go through the relay
  client->reset();
  server->Shutdown(absl::ZeroDuration());
  rmdir(tmpl);
}

}  // namespace
}  // namespace schemad
