#include "sdk_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string_view>

namespace rlp_test {

namespace {

bool is_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The first executable `name` on PATH, "" if none.
std::string find_on_path(std::string_view name) {
    const char* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/local/bin:/usr/bin:/bin";
    while (!rest.empty()) {
        auto colon = rest.find(':');
        std::string dir(rest.substr(0, colon));
        std::string candidate = (dir.empty() ? "." : dir) + "/" + std::string(name);
        if (is_file(candidate) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        if (colon == std::string_view::npos)
            break;
        rest.remove_prefix(colon + 1);
    }
    return {};
}

std::string last_line(const std::string& text) {
    auto end = text.find_last_not_of("\r\n");
    if (end == std::string::npos)
        return {};
    auto start = text.rfind('\n', end);
    return text.substr(start == std::string::npos ? 0 : start + 1,
                       end + 1 - (start == std::string::npos ? 0 : start + 1));
}

}  // namespace

std::string sdk_dir() {
    return std::string(RLP_SOURCE_DIR) + "/tests/sdk";
}

bool sdk_available() {
    return !find_on_path("node").empty() &&
           is_file(sdk_dir() + "/node_modules/openai/package.json");
}

sdk_result run_sdk_script(std::string script, std::string mode, std::string base_url,
                          std::string token,
                          std::vector<std::pair<std::string, std::string>> extra_env,
                          std::chrono::milliseconds timeout) {
    sdk_result result;
    std::string node = find_on_path("node");
    if (node.empty()) {
        result.stderr_text = "node not found on PATH";
        return result;
    }
    const std::string dir = sdk_dir();
    if (script.empty() || script.front() != '/')
        script = dir + "/" + script;

    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0)
        return result;
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        ::close(out_pipe[0]);
        ::close(out_pipe[1]);
        return result;
    }
    std::vector<std::string> argv{node, script};
    if (!mode.empty())
        argv.push_back(mode);
    extra_env.emplace_back("PROXY_URL", std::move(base_url));
    extra_env.emplace_back("PROXY_TOKEN", std::move(token));

    pid_t pid = ::fork();
    if (pid < 0) {
        for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]})
            ::close(fd);
        result.stderr_text = "fork failed";
        return result;
    }
    if (pid == 0) {
        ::setpgid(0, 0);
        ::dup2(out_pipe[1], 1);
        ::dup2(err_pipe[1], 2);
        int devnull = ::open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            ::dup2(devnull, 0);
        if (::chdir(dir.c_str()) != 0)
            ::_exit(126);
        for (auto& [k, v] : extra_env)
            ::setenv(k.c_str(), v.c_str(), 1);
        std::vector<char*> args;
        for (auto& a : argv)
            args.push_back(a.data());
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::setpgid(pid, pid);  // as the child does: no race with a kill of the group below
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);

    // Both pipes are read as they fill, so a chatty script never blocks on a full pipe.
    auto deadline = std::chrono::steady_clock::now() + timeout;
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    std::string* sinks[2] = {&result.stdout_text, &result.stderr_text};
    int open_pipes = 2;
    char buf[4096];
    while (open_pipes > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) {
            result.timed_out = true;
            ::kill(-pid, SIGKILL);
            break;
        }
        int r = ::poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000)));
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_pipes;
            }
        }
    }
    for (auto& p : fds)
        if (p.fd >= 0)
            ::close(p.fd);

    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status))
        result.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        result.exit_code = 128 + WTERMSIG(status);

    auto line = last_line(result.stdout_text);
    if (!line.empty())
        result.json = nlohmann::json::parse(line, nullptr, false);
    if (result.json.is_discarded())
        result.json = nullptr;
    return result;
}

}  // namespace rlp_test
