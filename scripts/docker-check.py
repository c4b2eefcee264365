#!/usr/bin/env python3
"""Runs the Dockerfile's build and run steps in Debian roots, for machines without a Docker
engine (CI, this project's build hosts), and checks the result like `docker run` would use it.

    sudo scripts/docker-check.py [--work DIR] [--book DIR] [--keep]

What it does, stage by stage, in the order the Dockerfile gives:
  - FROM: a fresh `debootstrap --variant=minbase bookworm` root (made once, kept as a tarball
    under --work). `debian:bookworm-slim` is that root; `rust:<v>-slim-bookworm` is that root
    plus what the official image adds (gcc, libc6-dev, ca-certificates, wget) and the host's
    Rust toolchain bind-mounted at /usr/local/rustup and /usr/local/cargo, as the image has it
    (its version must be the tag's). Any other base image is an error.
  - ARG/ENV/WORKDIR/USER: kept as Docker keeps them and applied to later steps.
  - RUN: `/bin/sh -c` in the root (chroot), as the current USER, with the stage's environment.
  - COPY: from the build context (the repository minus .dockerignore) or `--from=` a stage.
  - The last stage is then run as the image would be: as its USER, with its ENV, /data and
    /source as volumes (/source read-only, holding a sample book), the ENTRYPOINT + CMD in the
    background, the HEALTHCHECK command until it passes, a conversion through the API checked
    with the host's ffprobe (an independent reader), `aiom4b verify` inside, then STOPSIGNAL
    and a clean exit within the grace period. It also checks that the root holds no FFmpeg
    library and that `ldd` of the binary names none.

Written by hand because no tool does this without a container engine: buildah and podman need
user namespaces and overlay support these machines do not give, and kaniko is a container
itself. The Dockerfile subset it understands is the one this repository uses; anything else is
refused rather than skipped.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIRROR = "http://deb.debian.org/debian"
# What the official rust:*-slim-bookworm image installs on top of debian:bookworm-slim.
RUST_SLIM_PACKAGES = ["ca-certificates", "gcc", "libc6-dev", "wget"]


def log(msg: str) -> None:
    print(f"docker-check: {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> "NoReturn":  # noqa: F821
    log(f"FAILED: {msg}")
    sys.exit(1)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


# ------------------------------------------------------------------------------------------
# Dockerfile parsing


def instructions(text: str):
    """(INSTRUCTION, rest) pairs: comments dropped, backslash continuations joined."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if cur and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    if cur:
        fail("the Dockerfile ends inside a continued line")
    return out


def expand(s: str, env: dict) -> str:
    """${VAR}, ${VAR:-default} and $VAR from the build args/environment."""
    out, i = "", 0
    while i < len(s):
        c = s[i]
        if c == "$" and i + 1 < len(s) and s[i + 1] == "{":
            j = s.index("}", i)
            name, _, default = s[i + 2 : j].partition(":-")
            out += env.get(name) or default
            i = j + 1
        elif c == "$" and i + 1 < len(s) and (s[i + 1].isalnum() or s[i + 1] == "_"):
            j = i + 1
            while j < len(s) and (s[j].isalnum() or s[j] == "_"):
                j += 1
            out += env.get(s[i + 1 : j], "")
            i = j
        else:
            out += c
            i += 1
    return out


def exec_form(rest: str):
    """A JSON array (exec form) or, as Docker does, `/bin/sh -c` around the shell form."""
    rest = rest.strip()
    if rest.startswith("["):
        return json.loads(rest)
    return ["/bin/sh", "-c", rest]


def key_values(rest: str, env: dict) -> dict:
    """ENV/ARG pairs: `K=V K2="V 2"` (or the old `K V` form for ENV)."""
    parts = shlex.split(rest)
    if parts and "=" not in parts[0]:
        return {parts[0]: expand(" ".join(parts[1:]), env)}
    return {k: expand(v, env) for k, _, v in (p.partition("=") for p in parts)}


# ------------------------------------------------------------------------------------------
# Roots


class Root:
    def __init__(self, path: Path):
        self.path = path
        self.mounts: list[Path] = []

    def mount(self, args: list[str], target: str) -> None:
        where = self.path / target.lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        run(["mount", *args, str(where)])
        self.mounts.append(where)

    def bind(self, source: Path, target: str, readonly: bool = False) -> None:
        self.mount(["--bind", str(source)], target)
        if readonly:
            run(["mount", "-o", "remount,bind,ro", str(self.path / target.lstrip("/"))])

    def unmount_all(self) -> None:
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(m)], check=False)
        self.mounts.clear()

    def passwd(self, user: str) -> tuple[int, int, str]:
        """uid, gid and home of USER (a name or uid[:gid]) in this root's /etc/passwd."""
        name, _, group = user.partition(":")
        for line in (self.path / "etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == name or f[2] == name:
                gid = int(group) if group.isdigit() else int(f[3])
                return int(f[2]), gid, f[5]
        if name.isdigit():
            return int(name), int(group or name), "/"
        fail(f"USER {user}: no such user in the image")

    def command(self, argv: list[str], env: dict, workdir: str, user: str | None) -> list[str]:
        """`argv` run in this root, in `workdir`, as `user`, with exactly `env`, as a
        container runs it: setpriv (util-linux, in every Debian root) drops to the user
        inside the chroot."""
        uid, gid = (0, 0) if not user else self.passwd(user)[:2]
        inner = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
        if uid != 0:
            inner = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *inner]
        return ["chroot", str(self.path), "/bin/sh", "-c", 'cd "$0" && exec "$@"', workdir, *inner]

    def sh(self, argv: list[str], env: dict, workdir: str, user: str | None, **kw):
        return subprocess.run(self.command(argv, env, workdir, user), **kw)


def base_tarball(work: Path) -> Path:
    tar = work / "bookworm-minbase.tar"
    if tar.exists():
        return tar
    if not shutil.which("debootstrap"):
        fail("debootstrap is missing: apt-get install debootstrap (scripts/setup.sh does)")
    tmp = work / "debootstrap"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"debootstrap --variant=minbase bookworm {tmp} (once; kept as {tar})")
    run(["debootstrap", "--variant=minbase", "bookworm", str(tmp), MIRROR],
        stdout=subprocess.DEVNULL)
    run(["tar", "-C", str(tmp), "-cf", f"{tar}.tmp", "."])
    os.replace(f"{tar}.tmp", tar)
    shutil.rmtree(tmp)
    return tar


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (a bind mount of the host's toolchain must never be
    deleted with a root: rm --one-file-system does not see a bind mount of the same disk)."""
    base = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return [m for m in points if m == base or m.startswith(base + "/")]


def remove_root(path: Path) -> None:
    if not path.exists():
        return
    left = mounts_under(path)
    if left:
        fail(f"not removing {path}: still mounted there: {left} (umount them first)")
    run(["rm", "-rf", "--one-file-system", str(path)])


def new_root(work: Path, name: str) -> Root:
    path = work / "roots" / name
    remove_root(path)
    path.mkdir(parents=True)
    run(["tar", "-C", str(path), "-xf", str(base_tarball(work))])
    shutil.copy("/etc/resolv.conf", path / "etc/resolv.conf")
    root = Root(path)
    root.mount(["-t", "proc", "proc"], "/proc")
    root.bind(Path("/dev"), "/dev")
    return root


def host_toolchain() -> tuple[Path, Path]:
    home = Path.home()
    rustup = Path(os.environ.get("RUSTUP_HOME", home / ".rustup"))
    cargo = Path(os.environ.get("CARGO_HOME", home / ".cargo"))
    if not (cargo / "bin/cargo").exists():
        fail(f"no Rust toolchain at {cargo} (set CARGO_HOME/RUSTUP_HOME)")
    return rustup, cargo


# ------------------------------------------------------------------------------------------
# Build context


def context_files(ignore_file: Path):
    patterns = []
    if ignore_file.exists():
        for line in ignore_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                if line.startswith("!"):
                    fail(".dockerignore exceptions (!) are not supported here")
                patterns.append(line.strip("/"))

    def ignored(rel: str) -> bool:
        for p in patterns:
            if fnmatch.fnmatch(rel, p) or rel.startswith(p + "/"):
                return True
            if p.startswith("**/") and fnmatch.fnmatch(os.path.basename(rel), p[3:]):
                return True
        return False

    for dirpath, dirnames, filenames in os.walk(REPO):
        reldir = os.path.relpath(dirpath, REPO)
        reldir = "" if reldir == "." else reldir
        dirnames[:] = [d for d in dirnames if not ignored(os.path.join(reldir, d))]
        for f in filenames:
            rel = os.path.join(reldir, f)
            if not ignored(rel):
                yield rel


def copy_into(root: Root, sources: list[Path], dest: str, workdir: str, owner) -> None:
    target = dest if dest.startswith("/") else os.path.join(workdir, dest)
    tpath = root.path / target.lstrip("/")
    many = len(sources) > 1 or dest.endswith("/")
    for src in sources:
        if src.is_dir():
            shutil.copytree(src, tpath, symlinks=True, dirs_exist_ok=True)
        else:
            out = tpath / src.name if (many or tpath.is_dir()) else tpath
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
    if owner:
        run(["chown", "-R", f"{owner[0]}:{owner[1]}", str(tpath)])


# ------------------------------------------------------------------------------------------
# The stages


class Stage:
    def __init__(self, name: str, base: str, root: Root):
        self.name, self.base, self.root = name, base, root
        self.env: dict[str, str] = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        }
        self.args: dict[str, str] = {}
        self.workdir = "/"
        self.user: str | None = None
        self.entrypoint: list[str] = []
        self.cmd: list[str] = []
        self.volumes: list[str] = []
        self.healthcheck: list[str] | None = None
        self.health_opts: dict[str, str] = {}
        self.stopsignal = "SIGTERM"
        self.exposed: list[str] = []
        self.reused = False


def from_base(image: str, name: str, work: Path, reuse: bool = False) -> Stage:
    repo, _, tag = image.partition(":")
    rust = repo == "rust" and tag.endswith("-slim-bookworm")
    if image != "debian:bookworm-slim" and not rust:
        fail(f"FROM {image}: this script knows debian:bookworm-slim and rust:<v>-slim-bookworm only")
    done = work / "roots" / name / ".docker-check-done"
    reused = reuse and done.exists()
    if reused:
        log(f"stage {name}: reusing the finished root from an earlier run (--reuse)")
    st = Stage(name, image, Root(done.parent) if reused else new_root(work, name))
    st.reused = reused
    if rust:
        # Where the official image keeps the toolchain, and its environment.
        st.env.update({
            "RUSTUP_HOME": "/usr/local/rustup",
            "CARGO_HOME": "/usr/local/cargo",
            "PATH": "/usr/local/cargo/bin:" + st.env["PATH"],
        })
    if reused or not rust:
        return st
    want = tag[: -len("-slim-bookworm")]
    rustup, cargo = host_toolchain()
    st.root.bind(rustup, "/usr/local/rustup")
    st.root.bind(cargo, "/usr/local/cargo")
    log(f"{name}: apt-get install {' '.join(RUST_SLIM_PACKAGES)} (what {image} has)")
    st.root.sh(["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y -qq --no-install-recommends " + " ".join(RUST_SLIM_PACKAGES)],
               st.env, "/", None, check=True, stdout=subprocess.DEVNULL)
    got = st.root.sh(["rustc", "--version"], st.env, "/", None, check=True,
                     capture_output=True, text=True).stdout.split()[1]
    if not (got == want or got.startswith(want + ".")):
        fail(f"{image} wants Rust {want}; the host toolchain mounted for it is {got}")
    return st


def build(dockerfile: Path, work: Path, build_args: dict, reuse: bool) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    global_args: dict[str, str] = {}
    st: Stage | None = None
    for word, rest in instructions(dockerfile.read_text()):
        if word == "ARG" and st is None:
            for k, v in key_values(rest, global_args).items():
                global_args[k] = build_args.get(k, v)
            continue
        if word == "FROM":
            parts = rest.split()
            image = expand(parts[0], global_args)
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            log(f"stage {name}: FROM {image}")
            if st is not None:
                (st.root.path / ".docker-check-done").touch()
            st = from_base(image, name, work, reuse)
            stages[name] = st
            continue
        if st is None:
            fail(f"{word} before the first FROM")
        env = {**st.args, **st.env}
        if word == "ARG":
            for k, v in key_values(rest, env).items():
                st.args[k] = build_args.get(k, global_args.get(k, v))
        elif word == "ENV":
            st.env.update(key_values(rest, env))
        elif word == "WORKDIR":
            st.workdir = os.path.join(st.workdir, expand(rest, env))
            (st.root.path / st.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif word == "USER":
            st.user = expand(rest, env)
            st.root.passwd(st.user)
        elif word in ("RUN", "COPY") and st.reused:
            continue
        elif word == "RUN":
            argv = exec_form(rest)
            log(f"stage {st.name}: RUN {rest[:100]}{'…' if len(rest) > 100 else ''}")
            started = time.monotonic()
            r = st.root.sh(argv, env, st.workdir, st.user)
            if r.returncode != 0:
                fail(f"stage {st.name}: RUN exited {r.returncode}: {rest}")
            log(f"stage {st.name}: RUN took {time.monotonic() - started:.0f} s")
        elif word == "COPY":
            args = shlex.split(rest)
            opts = {a[2:].partition("=")[0]: a.partition("=")[2] for a in args if a.startswith("--")}
            paths = [expand(a, env) for a in args if not a.startswith("--")]
            srcs, dest = paths[:-1], paths[-1]
            owner = st.root.passwd(opts["chown"]) if "chown" in opts else None
            if "from" in opts:
                other = stages.get(opts["from"]) or fail(f"COPY --from={opts['from']}: no such stage")
                sources = [other.root.path / s.lstrip("/") for s in srcs]
                for s in sources:
                    if not s.exists():
                        fail(f"COPY --from={opts['from']} {s}: not in that stage")
                copy_into(st.root, sources, dest, st.workdir, owner)
            else:
                if srcs != ["."]:
                    fail("COPY from the context: only `COPY . DEST` is supported here")
                target = st.root.path / os.path.join(st.workdir, dest).lstrip("/")
                n = 0
                for rel in context_files(REPO / ".dockerignore"):
                    out = target / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / rel, out, follow_symlinks=False)
                    n += 1
                log(f"stage {st.name}: COPY . {dest} ({n} files from the context)")
        elif word == "ENTRYPOINT":
            st.entrypoint = exec_form(rest)
        elif word == "CMD":
            st.cmd = exec_form(rest)
        elif word == "VOLUME":
            st.volumes = json.loads(rest) if rest.startswith("[") else rest.split()
        elif word == "EXPOSE":
            st.exposed = rest.split()
        elif word == "STOPSIGNAL":
            st.stopsignal = rest.strip()
        elif word == "HEALTHCHECK":
            args = shlex.split(rest.partition("CMD")[0])
            st.health_opts = {a[2:].partition("=")[0]: a.partition("=")[2] for a in args}
            st.healthcheck = exec_form(rest.partition("CMD")[2])
        elif word == "LABEL":
            pass
        else:
            fail(f"instruction {word} is not supported by this script")
    return stages


# ------------------------------------------------------------------------------------------
# Running the image


def seconds(s: str, default: float) -> float:
    if not s:
        return default
    return float(s[:-1]) * (60 if s.endswith("m") else 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, token: str, method: str, path: str, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def run_image(st: Stage, work: Path, book: Path) -> None:
    """`docker run` with the image's volumes, user and command; then a conversion through the
    API, `aiom4b verify`, and `docker stop`."""
    root = st.root
    uid, gid, _ = root.passwd(st.user) if st.user else (0, 0, "/")
    if "/data" not in st.volumes or "/source" not in st.volumes:
        fail(f"the image should declare /data and /source volumes, it has {st.volumes}")
    data = work / "volumes/data"
    src = work / "volumes/source"
    for d in (data, src):
        if d.exists():
            shutil.rmtree(d)
    # A new named volume starts as a copy of the image's folder, ownership included.
    shutil.copytree(root.path / "data", data, symlinks=True)
    os.chown(data, uid, gid)
    shutil.copytree(book, src / "Author" / book.name)
    root.bind(data, "/data")
    root.bind(src, "/source", readonly=True)
    port = free_port()
    env = {**st.env, "API_PORT": str(port)}
    argv = st.entrypoint + st.cmd
    cmd = root.command(argv, env, st.workdir, st.user)
    log(f"docker run: {' '.join(argv)} as {st.user} (uid {uid}) on port {port}")
    server_log = work / "serve.log"
    with open(server_log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        # HEALTHCHECK: the image's own command until it passes (start period + retries).
        deadline = time.monotonic() + seconds(st.health_opts.get("start-period"), 0) + 30
        while True:
            if proc.poll() is not None:
                fail(f"serve exited {proc.returncode}:\n{server_log.read_text()}")
            r = root.sh(st.healthcheck, env, st.workdir, st.user, capture_output=True, text=True)
            if r.returncode == 0:
                log(f"HEALTHCHECK passed: {r.stdout.strip()}")
                break
            if time.monotonic() > deadline:
                fail(f"HEALTHCHECK never passed: {r.stderr.strip()}\n{server_log.read_text()}")
            time.sleep(0.5)
        token_file = work / "volumes/data/api_token"
        if not token_file.exists():
            fail("serve --generate-token wrote no /data/api_token")
        token = token_file.read_text().strip()
        # A conversion through the API, of the book on the read-only /source volume.
        created = api(port, token, "POST", "/convert",
                      {"folders": [{"path": f"Author/{book.name}"}]})
        job = created["jobs"][0]["id"]
        deadline = time.monotonic() + 300
        while True:
            view = api(port, token, "GET", f"/jobs/{job}")
            if view["status"] in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                fail(f"job {job} did not finish in 300 s: {view}")
            time.sleep(0.5)
        if view["status"] != "completed":
            fail(f"job {job} ended {view['status']}: {json.dumps(view)}\n{server_log.read_text()}")
        outputs = list((work / "volumes/data/output").glob("*.m4b"))
        if len(outputs) != 1:
            fail(f"expected one .m4b in /data/output, found {outputs}")
        out = outputs[0]
        st_out = out.stat()
        if st_out.st_uid != uid:
            fail(f"{out.name} belongs to uid {st_out.st_uid}, not the image's user {uid}")
        probe = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-show_format", "-show_chapters", "-show_streams", "-of",
             "json", str(out)], check=True, capture_output=True, text=True).stdout)
        chapters = len(probe["chapters"])
        mp3s = len(list(book.glob("*.mp3")))
        codec = probe["streams"][0]["codec_name"]
        if codec != "aac" or chapters != mp3s:
            fail(f"{out.name}: codec {codec}, {chapters} chapters for {mp3s} files")
        log(f"converted in the image: {out.name}, {float(probe['format']['duration']):.2f} s, "
            f"{chapters} chapters, {st_out.st_size} bytes (ffprobe on the host)")
        v = root.sh(st.entrypoint + ["verify", f"/data/output/{out.name}"], env, st.workdir,
                    st.user, capture_output=True, text=True)
        if v.returncode != 0:
            fail(f"aiom4b verify in the image failed:\n{v.stdout}{v.stderr}")
        # docker stop: STOPSIGNAL, then the grace period.
        proc.send_signal(getattr(signal, st.stopsignal))
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fail(f"serve did not stop within 30 s of {st.stopsignal}")
        if code != 0:
            fail(f"serve exited {code} on {st.stopsignal}:\n{server_log.read_text()}")
        log(f"docker stop: serve exited 0 on {st.stopsignal}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dockerfile", type=Path, default=REPO / "Dockerfile")
    p.add_argument("--work", type=Path, default=REPO / "target/docker-check")
    p.add_argument("--book", type=Path, help="a book folder to convert in the image "
                   "(default: generated by `cargo run --release --example sample_book`)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--keep", action="store_true", help="keep the roots afterwards")
    p.add_argument("--reuse", action="store_true", help="development aid: reuse the finished "
                   "earlier stages kept by a --keep run instead of building them again")
    a = p.parse_args()
    if os.geteuid() != 0:
        fail("run as root (chroot, mounts)")
    a.work.mkdir(parents=True, exist_ok=True)
    a.work = a.work.resolve()
    book = a.book
    if book is None:
        book = a.work / "Sample Book"
        if not book.exists():
            run(["cargo", "run", "--release", "--quiet", "--example", "sample_book", "--", str(book)],
                cwd=REPO)
    build_args = dict(kv.partition("=")[::2] for kv in a.build_arg)
    stages: dict[str, Stage] = {}
    started = time.monotonic()
    try:
        stages = build(a.dockerfile, a.work, build_args, a.reuse)
        last = list(stages.values())[-1]
        if not last.user or last.root.passwd(last.user)[0] == 0:
            fail("the image runs as root; it should have a USER that is not")
        if not last.healthcheck:
            fail("the image has no HEALTHCHECK")
        check_image_static(last)
        run_image(last, a.work, book.resolve())
    finally:
        for s in stages.values():
            s.root.unmount_all()
        if not a.keep:
            for s in stages.values():
                remove_root(s.root.path)
    log(f"OK in {time.monotonic() - started:.0f} s: the Dockerfile builds, and its image runs "
        "serve as a non-root user with no FFmpeg installed")


def check_image_static(st: Stage) -> None:
    """The run image holds no FFmpeg library, and the binary neither needs one nor hides it."""
    root = st.root
    found = sorted(str(p.relative_to(root.path)) for pat in ("libav*.so*", "libsw*.so*")
                   for p in root.path.glob(f"usr/lib/**/{pat}"))
    if found:
        fail(f"the run image holds FFmpeg libraries: {found}")
    binary = st.entrypoint[0]
    if not binary.startswith("/"):
        for d in st.env["PATH"].split(":"):
            if (root.path / d.lstrip("/") / binary).exists():
                binary = f"{d}/{binary}"
                break
        else:
            fail(f"ENTRYPOINT {binary} is not on the image's PATH")
    ldd = root.sh(["ldd", binary], st.env, "/", None, capture_output=True, text=True)
    log(f"ldd {binary}:\n{ldd.stdout.rstrip()}")
    if ldd.returncode != 0 or "libav" in ldd.stdout or "libsw" in ldd.stdout:
        fail(f"ldd {binary}: exit {ldd.returncode}, or it lists an FFmpeg library")
    ver = root.sh(st.entrypoint + ["--version"], st.env, st.workdir, st.user,
                  capture_output=True, text=True)
    log(f"{binary} --version:\n{ver.stdout.rstrip()}")
    if ver.returncode != 0 or "(static: " not in ver.stdout:
        fail("--version does not say it carries a static FFmpeg")


if __name__ == "__main__":
    main()
