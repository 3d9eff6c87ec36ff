"""bwb's MBPP harness: runs one candidate program and its assert tests inside the sandbox.

Started by src/exec as `python3 -I -B -c <this file>`. Protocol:

- stdin carries one job, `<length>\n<json>`: the verdict token, the verdict fd, the
  candidate code, the setup code, the tests and whether to install the audit hook. stdin
  is then replaced by /dev/null so the program reads EOF.
- The verdict goes to the verdict fd (a pipe only the harness is told about, never stdout)
  as JSON lines that carry the token: progress lines, then one outcome line. A program's
  own prints cannot forge it, and the exit status must agree with the outcome: 0 passed,
  10 syntax error, 11 runtime error, 12 failed assertion, 13 invalid test.
- No outcome line (os._exit, a signal, a crash) means the program never finished its tests.

Everything needed after the program has run is bound to a local before it runs, so a
program that rebinds os.write, AssertionError or json does not change the verdict. A
program that goes looking for the token through frame or gc introspection is out of scope:
the OS-level sandbox, not this file, is the security boundary.
"""

import builtins
import json
import os
import sys
import threading
import traceback

EXIT = {
    "passed": 0,
    "syntax_error": 10,
    "runtime_error": 11,
    "failed_assertion": 12,
    "invalid_test": 13,
}
DETAIL_CHARS = 500
TRACEBACK_FRAMES = 20


def quote(text):
    """A JSON string literal, without the json module (a program may have patched it)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif code < 0x20:
            out.append("\\u%04x" % code)
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")  # a lone surrogate is not valid JSON
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def one_line(text):
    text = " ".join(str(text).split("\n")).replace("\r", " ").strip()
    if len(text) > DETAIL_CHARS:
        text = text[: DETAIL_CHARS - 1] + "\u2026"
    return text


def describe(exc):
    """`Type: message`, or just `Type` when the message is empty."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except BaseException:
        message = ""
    return "%s: %s" % (name, message) if message else name


def safe_repr(value):
    try:
        return repr(value)
    except BaseException:
        return "?"


def shown(source):
    """A test as the verdict names it: its first line."""
    lines = source.strip().splitlines() or [""]
    return lines[0] + (" \u2026" if len(lines) > 1 else "")


def install_guard(workdir):
    """Audit hook, defence in depth behind the OS sandbox: no writes outside the work dir,
    no network, no new programs (they would run without this hook), no ctypes, no gc
    introspection. Python-level only: it cannot see what C code does."""
    realpath, fspath, fsdecode = os.path.realpath, os.fspath, os.fsdecode
    get_ident = threading.get_ident
    root = realpath(workdir)
    prefix = root.rstrip(os.sep) + os.sep
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    # Audit event -> positions of the path arguments it changes.
    paths = {
        "os.chflags": (0,),
        "os.chmod": (0,),
        "os.chown": (0,),
        "os.link": (0, 1),
        "os.mkdir": (0,),
        "os.mkfifo": (0,),
        "os.mknod": (0,),
        "os.remove": (0,),
        "os.removexattr": (0,),
        "os.rename": (0, 1),
        "os.rmdir": (0,),
        "os.setxattr": (0,),
        "os.symlink": (1,),
        "os.truncate": (0,),
        "os.utime": (0,),
        "shutil.move": (0, 1),
        "shutil.rmtree": (0,),
    }
    network = frozenset(
        [
            "socket.bind",
            "socket.connect",
            "socket.getaddrinfo",
            "socket.gethostbyaddr",
            "socket.gethostbyname",
            "socket.getnameinfo",
            "socket.sendmsg",
            "socket.sendto",
            "http.client.connect",
            "urllib.Request",
        ]
    )
    programs = frozenset(
        ["os.exec", "os.posix_spawn", "os.spawn", "os.startfile", "os.system", "subprocess.Popen"]
    )
    other = frozenset(
        [
            "ctypes.addressof",
            "ctypes.call_function",
            "ctypes.cdata",
            "ctypes.cdata/buffer",
            "ctypes.dlopen",
            "ctypes.dlsym",
            "ctypes.dlsym/handle",
            "ctypes.PyObj_FromPtr",
            "ctypes.string_at",
            "ctypes.wstring_at",
            "gc.get_objects",
            "gc.get_referents",
            "gc.get_referrers",
            "sys._current_frames",
        ]
    )
    watched = frozenset(paths) | network | programs | other | {"open"}
    streams = frozenset([os.devnull, "/dev/stdout", "/dev/stderr"])
    busy = set()  # threads inside the hook: realpath must not re-enter it

    def inside(path):
        if isinstance(path, int):
            return True  # an fd: its open was checked
        try:
            text = fspath(path)
            if isinstance(text, bytes):
                text = fsdecode(text)
            if text in streams:
                return True
            full = realpath(text)
        except BaseException:
            return False
        return full == root or full.startswith(prefix)

    def deny(what):
        raise PermissionError("sandbox: %s is blocked" % what)

    def hook(event, args):
        if event not in watched:
            return
        me = get_ident()
        if me in busy:
            return
        busy.add(me)
        try:
            if event == "open":
                path, mode, flags = (tuple(args) + (None, None, None))[:3]
                if isinstance(flags, int):
                    writing = bool(flags & write_flags)
                else:
                    writing = isinstance(mode, str) and any(c in mode for c in "wax+")
                if writing and not inside(path):
                    deny("writing %s (outside the work dir)" % safe_repr(path))
            elif event in paths:
                for i in paths[event]:
                    if i < len(args) and not inside(args[i]):
                        deny("%s on %s (outside the work dir)" % (event, safe_repr(args[i])))
            elif event in network:
                deny("network access (%s)" % event)
            elif event in programs:
                deny("starting programs (%s)" % event)
            else:
                deny(event)
        finally:
            busy.discard(me)

    sys.addaudithook(hook)


def main():
    write, exit_now, getpid = os.write, os._exit, os.getpid
    assertion_error, system_exit, base_exception = AssertionError, SystemExit, BaseException
    print_exception = traceback.print_exception
    real_stdout, real_stderr = sys.stdout, sys.stderr

    length = int(sys.stdin.buffer.readline())
    job = json.loads(sys.stdin.buffer.read(length).decode("utf-8"))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    verdict_fd = job["verdict_fd"]
    os.set_inheritable(verdict_fd, False)
    head = '{"token":' + quote(job.pop("token"))
    harness_pid = getpid()

    def send(body):
        # A process the program forked runs this code too; only the harness itself reports.
        if getpid() != harness_pid:
            return
        data = (head + "," + body + "}\n").encode("utf-8", "replace")
        while data:
            try:
                data = data[write(verdict_fd, data) :]
            except InterruptedError:
                continue
            except OSError:
                return

    def finish(outcome, detail, exc=None):
        if exc is not None:
            try:
                # The outermost frames only: formatting a million-frame RecursionError in
                # full takes longer than any timeout.
                print_exception(
                    type(exc), exc, exc.__traceback__, limit=TRACEBACK_FRAMES, file=real_stderr
                )
            except BaseException:
                pass
        for stream in (sys.stdout, sys.stderr, real_stdout, real_stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        send('"outcome":%s,"detail":%s' % (quote(outcome), quote(one_line(detail))))
        exit_now(EXIT[outcome])

    # 1. Compile everything before any of it runs: a broken test is the dataset's fault.
    tests = job["tests"]
    compiled = []
    for i, source in enumerate(tests, 1):
        try:
            compiled.append(compile(source, "test_%d" % i, "exec", dont_inherit=True, optimize=0))
        except base_exception as e:
            finish("invalid_test", "test %d is not valid Python: %s" % (i, describe(e)))
    try:
        setup = compile(job["setup"], "setup.py", "exec", dont_inherit=True, optimize=0)
    except base_exception as e:
        finish("invalid_test", "the setup code is not valid Python: %s" % describe(e))
    try:
        code = compile(job["code"], "solution.py", "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes before Python 3.12
        finish("syntax_error", describe(e))
    except base_exception as e:  # MemoryError, RecursionError while compiling
        finish("runtime_error", describe(e), e)

    if job.get("audit", True):
        install_guard(os.getcwd())

    # 2. Setup, then the program, in one fresh namespace. Not `__main__`, so a
    # `if __name__ == "__main__":` demo block does not run.
    namespace = {"__name__": "solution", "__builtins__": builtins}
    send('"progress":"setup"')
    try:
        exec(setup, namespace)
    except system_exit as e:
        where = "sys.exit(%s) in the setup code" % safe_repr(e.code)
        finish("runtime_error", "exited before the tests ran (%s)" % where)
    except base_exception as e:
        finish("runtime_error", "%s (in the setup code)" % describe(e), e)
    send('"progress":"code"')
    try:
        exec(code, namespace)
    except system_exit as e:
        finish("runtime_error", "exited before the tests ran (sys.exit(%s))" % safe_repr(e.code))
    except base_exception as e:
        finish("runtime_error", describe(e), e)

    # 3. The asserts, in order; the first failure decides.
    for i, (source, test) in enumerate(zip(tests, compiled), 1):
        send('"progress":"test","index":%d' % i)
        try:
            exec(test, namespace)
        except assertion_error as e:
            message = describe(e)[len(type(e).__name__) + 2 :]
            suffix = ": " + message if message else ""
            finish("failed_assertion", "%s failed%s" % (shown(source), suffix))
        except system_exit as e:
            where = "%s (sys.exit(%s))" % (shown(source), safe_repr(e.code))
            finish("runtime_error", "exited during " + where)
        except base_exception as e:
            finish("runtime_error", "%s (in %s)" % (describe(e), shown(source)), e)
    finish("passed", "%d of %d tests passed" % (len(tests), len(tests)))


main()
