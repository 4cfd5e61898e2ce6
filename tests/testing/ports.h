// Loopback ports for tests that need an address before anything listens on
// it (a server started where a client already dials, a DSN that must find no
// server).
#ifndef SCHEMAD_TESTS_TESTING_PORTS_H_
#define SCHEMAD_TESTS_TESTING_PORTS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>

namespace schemad::testing {

// A listening socket on 127.0.0.1 at a port below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range), its number in *port; -1 when none
// could be had. Below that range no connect() or bind(0) anywhere on the
// machine is handed the port, so once the caller closes the socket the port
// stays free for the caller's own later bind: a port from bind(0), closed,
// can be taken meanwhile by any other process's outgoing connection (seen:
// "Address already in use" for a server started on it 0.1 s later, while
// other tests ran beside it).
inline int ListenOnUnusedLoopbackPort(int* port) {
  int ephemeral_low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
  const int low = 10000;
  const int high = ephemeral_low > low + 1000 ? ephemeral_low : 32768;
  std::mt19937 random(std::random_device{}());
  const int start = low + static_cast<int>(random() % static_cast<unsigned>(high - low));
  for (int i = 0; i < high - low; ++i) {
    const int candidate = low + (start - low + i) % (high - low);
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(candidate));
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && listen(fd, 8) == 0) {
      *port = candidate;
      return fd;
    }
    close(fd);
  }
  return -1;
}

// A loopback port nothing listens on (as above, the socket closed again);
// 0 when none could be had.
inline int UnusedLoopbackPort() {
  int port = 0;
  const int fd = ListenOnUnusedLoopbackPort(&port);
  if (fd < 0) return 0;
  close(fd);
  return port;
}

}  // namespace schemad::testing

#endif  // SCHEMAD_TESTS_TESTING_PORTS_H_
