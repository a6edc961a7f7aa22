// meshfs demo [DIR]: three local peers, a volume and a mount, in one command.
//
// Everything is done through the meshfs command line itself (the demo runs
// /proc/self/exe as child processes), so the demo exercises exactly what a
// user would type: `meshfs node` x3 on loopback, `meshfs init` with a key
// file, `meshfs mount -f`. It writes a file through the mount, reads it back,
// shows where its slices went, and then waits (Ctrl-C, or --duration) before
// unmounting and stopping the peers it started.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "command.h"
#include "meshfs/fs/mount_table.h"

namespace meshfs::cli {
namespace {

namespace fsys = std::filesystem;

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::string SelfExe() {
  std::error_code ec;
  auto p = fsys::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("meshfs") : p.string();
}

// Starts `meshfs ARGS...` with stdout+stderr to `log`; returns the pid or -1.
pid_t Spawn(const std::vector<std::string>& args, const fsys::path& log) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
  }
  const int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, STDIN_FILENO);
  std::vector<char*> argv;
  const std::string exe = SelfExe();
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(exe.c_str(), argv.data());
  _exit(127);
}

// Runs `meshfs ARGS...` to completion; returns its exit code.
int RunSelf(const std::vector<std::string>& args, const fsys::path& log) {
  const pid_t pid = Spawn(args, log);
  if (pid < 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Alive(pid_t pid) { return waitpid(pid, nullptr, WNOHANG) == 0; }

uint16_t FreePort() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

bool PortOpen(uint16_t port) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(s);
  return ok;
}

bool IsMounted(const fsys::path& p) {
  const std::string want = fsys::weakly_canonical(p).string();
  for (const fs::MountEntry& e : fs::ReadMountTable()) {
    if (e.mountpoint == want) return true;
  }
  return false;
}

std::string Tail(const fsys::path& log) {
  std::ifstream in(log);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all.size() > 1500 ? all.substr(all.size() - 1500) : all;
}

struct Child {
  pid_t pid;
  std::string what;
};

void StopAll(std::vector<Child>& children) {
  for (auto it = children.rbegin(); it != children.rend(); ++it) {
    if (it->pid > 0 && Alive(it->pid)) kill(it->pid, SIGTERM);
  }
  for (auto& c : children) {
    if (c.pid <= 0) continue;
    for (int i = 0; i < 100 && Alive(c.pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (Alive(c.pid)) {
      kill(c.pid, SIGKILL);
      waitpid(c.pid, nullptr, 0);
    }
  }
  children.clear();
}

int RunDemo(std::string dir_arg, int duration) {
  fsys::path dir;
  if (dir_arg.empty()) {
    char tmpl[] = "/tmp/meshfs-demo-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return Fail("demo", Status::FromErrno("mkdtemp", errno));
    dir = tmpl;
  } else {
    dir = fsys::absolute(dir_arg);
    std::error_code ec;
    fsys::create_directories(dir, ec);
  }
  std::cout << "meshfs demo in " << dir.string() << "\n";
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  // The ports are kept in DIR/ports so that a demo restarted in the same
  // DIR finds its peers where the volume's config says they are.
  std::vector<uint16_t> ports;
  {
    std::ifstream pin(dir / "ports");
    for (int p; ports.size() < 3 && pin >> p;) {
      if (p > 0 && p < 65536) ports.push_back(static_cast<uint16_t>(p));
    }
  }
  if (ports.size() != 3) {
    ports = {FreePort(), FreePort(), FreePort()};
    std::ofstream pout(dir / "ports");
    pout << ports[0] << " " << ports[1] << " " << ports[2] << "\n";
  }

  std::vector<Child> children;
  std::vector<std::string> addrs;
  for (int i = 0; i < 3; ++i) {
    const uint16_t port = ports[i];
    const std::string addr = "127.0.0.1:" + std::to_string(port);
    const fsys::path data = dir / ("peer" + std::to_string(i + 1));
    fsys::create_directories(data);
    std::vector<std::string> args{"node", "--data", data.string(), "--listen", addr,
                                  "--capacity", "2G"};
    if (!addrs.empty()) args.insert(args.end(), {"--join", addrs.front()});
    const fsys::path log = dir / ("peer" + std::to_string(i + 1) + ".log");
    const pid_t pid = Spawn(args, log);
    children.push_back({pid, "peer " + addr});
    bool up = false;
    for (int t = 0; t < 100 && !up; ++t) {
      if (!Alive(pid)) break;
      up = PortOpen(port);
      if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!up) {
      std::cerr << "meshfs: demo: peer " << addr << " did not start; its log:\n" << Tail(log);
      StopAll(children);
      return kExitFailure;
    }
    std::cout << "  peer " << i + 1 << " listening on " << addr << " (data in " << data.string()
              << ", log " << log.string() << ")\n";
    addrs.push_back(addr);
  }

  const fsys::path volume = dir / "volume";
  const fsys::path keyfile = dir / "volume.key";
  const fsys::path mnt = dir / "mnt";
  fsys::create_directories(mnt);
  if (!fsys::exists(volume / "config.toml")) {
    std::string peers = addrs[0] + "," + addrs[1] + "," + addrs[2];
    const int rc = RunSelf({"init", volume.string(), "--peers", peers, "--replicas", "3",
                            "--key-file", keyfile.string()},
                           dir / "init.log");
    if (rc != 0) {
      std::cerr << "meshfs: demo: 'meshfs init' failed:\n" << Tail(dir / "init.log");
      StopAll(children);
      return kExitFailure;
    }
  }
  std::cout << "  volume " << volume.string() << " (key file " << keyfile.string() << ")\n";

  const fsys::path mlog = dir / "mount.log";
  const pid_t mpid = Spawn({"mount", volume.string(), mnt.string(), "-f"}, mlog);
  bool mounted = false;
  for (int t = 0; t < 200 && !mounted; ++t) {
    if (!Alive(mpid)) break;
    mounted = IsMounted(mnt);
    if (!mounted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!mounted) {
    std::cerr << "meshfs: demo: the mount did not come up; its log:\n" << Tail(mlog);
    if (Alive(mpid)) kill(mpid, SIGKILL);
    StopAll(children);
    return kExitFailure;
  }
  children.push_back({mpid, "mount"});
  std::cout << "  mounted at " << mnt.string() << "\n";

  // Show it working: write, read back, sync, and where the slices went.
  const fsys::path hello = mnt / "hello.txt";
  const std::string text = "Hello from meshfs: this file is encrypted and stored on 3 peers.\n";
  {
    std::ofstream out(hello);
    out << text;
  }
  std::ifstream in(hello);
  std::string back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::cout << "  wrote and read back " << hello.string() << ": "
            << (back == text ? "ok" : "MISMATCH") << "\n";
  const int sync_rc = RunSelf({"sync", volume.string()}, dir / "sync.log");
  std::cout << "  meshfs sync: " << (sync_rc == 0 ? "everything is on 3 peers" : "failed (see sync.log)")
            << "\n\nTry it:\n"
            << "  ls -l " << mnt.string() << "\n"
            << "  " << SelfExe() << " status " << volume.string() << "\n"
            << "  " << SelfExe() << " peers " << volume.string() << "\n"
            << "  curl -s http://" << addrs[0] << "/v1/members\n\n";
  if (duration > 0) {
    std::cout << "Stopping in " << duration << " s (or Ctrl-C).\n" << std::flush;
    for (int i = 0; i < duration * 10 && !g_stop; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } else {
    std::cout << "Press Ctrl-C to unmount and stop the peers.\n" << std::flush;
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  std::cout << "\nunmounting and stopping the peers...\n";
  const int urc = RunSelf({"umount", mnt.string()}, dir / "umount.log");
  if (urc != 0 && IsMounted(mnt)) RunSelf({"umount", mnt.string(), "--force"}, dir / "umount.log");
  StopAll(children);
  std::cout << "done; state kept in " << dir.string() << "\n";
  return back == text && sync_rc == 0 ? kExitOk : kExitFailure;
}

}  // namespace

void RegisterDemoCommands(CLI::App& app, CommandTable& table) {
  static std::string dir;
  static int duration = 0;
  auto* demo = app.add_subcommand("demo", "Start three local peers, a volume and a mount");
  demo->add_option("DIR", dir, "Working directory (default: a new one under /tmp)");
  demo->add_option("--duration", duration,
                   "Stop after this many seconds instead of waiting for Ctrl-C");
  table.Add(demo, [] { return RunDemo(dir, duration); });
}

}  // namespace meshfs::cli
