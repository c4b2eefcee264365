//! A real PostgreSQL for the tests of aiom4b's PostgreSQL job store, and a fresh database for
//! each test.
//!
//! With `AIOM4B_TEST_DATABASE_URL` set (e.g. CI's own server), that server is used: each test
//! gets a new database created through it. Otherwise one throw-away server per test process is
//! started from Debian's `postgresql` package (`initdb` + `postgres` from
//! `/usr/lib/postgresql/<version>/bin`, installed by `scripts/setup.sh`): a data folder under
//! the temporary folder, loopback only, a free port, trust authentication, no fsync. Run as
//! root, the server runs as `nobody` (PostgreSQL refuses root). It dies with the test process
//! (parent-death signal), and the next run removes folders that dead runs left.
//!
//! Neither way skips: without a server and without PostgreSQL installed, [`fresh_database`]
//! panics and says what to install. Under CI (`AIOM4B_CI` set, as `.ci/run` does after
//! starting its cluster with `scripts/pg-test-cluster.sh`) a missing
//! `AIOM4B_TEST_DATABASE_URL` is an error too: CI must test against the server it started.
//!
//! [`PrivateServer`] is a server of one test's own, which the test may stop and start again
//! (a PostgreSQL restart in the middle of a run).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The user the throw-away server runs as when the tests run as root.
const NOBODY: u32 = 65534;

struct Server {
    /// A URL of the server's maintenance database, to create test databases through.
    admin: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// A connection URL of a new, empty database on the test server.
pub fn fresh_database() -> String {
    let server = SERVER.get_or_init(start);
    let name = format!(
        "t_{}_{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut c = postgres::Client::connect(&server.admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL {}: {e}", server.admin));
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating a test database: {e}"));
    with_database(&server.admin, &name)
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    // postgres://user@host:port/dbname — the last path segment after the authority.
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{base}/{db}{query}")
}

fn start() -> Server {
    if let Ok(url) = std::env::var("AIOM4B_TEST_DATABASE_URL") {
        return Server { admin: url };
    }
    if std::env::var_os("AIOM4B_CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "AIOM4B_CI is set but AIOM4B_TEST_DATABASE_URL is not: CI runs the PostgreSQL tests \
             against the cluster .ci/run starts (scripts/pg-test-cluster.sh start)"
        );
    }
    remove_stale_folders();
    let dir = std::env::temp_dir().join(format!("aiom4b-pg-{}", std::process::id()));
    let cluster = Cluster::init(dir);
    let port = free_port();
    // Never stopped: it dies with the test process (its parent-death signal).
    std::mem::forget(cluster.spawn(port));
    let admin = cluster.admin_url(port);
    cluster.wait_ready(&admin);
    Server { admin }
}

/// A data folder made by `initdb`, in a folder of its own (which also holds the socket and
/// the server's log).
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    /// Running as root: the server runs as `nobody`.
    root: bool,
}

/// A running server process.
struct Running {
    pid: i32,
    /// Receives once the process has exited.
    exited: Receiver<()>,
}

impl Cluster {
    /// A new cluster in `dir` (emptied first).
    fn init(dir: PathBuf) -> Cluster {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed: the job store tests need Debian's `postgresql` \
                 package (scripts/setup.sh installs it), or AIOM4B_TEST_DATABASE_URL pointing \
                 at a server where they may create databases"
            )
        });
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            chown(&dir);
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-U",
                "aiom4b",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = as_user(&mut initdb, root).output().expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster { bin, dir, root }
    }

    /// Starts the server on loopback `port`, with its socket in the cluster's folder. It gets
    /// SIGQUIT (immediate shutdown) if the test process dies.
    fn spawn(&self, port: u16) -> Running {
        let mut postgres = Command::new(self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("server.log"))
                    .unwrap(),
            ));
        as_user(&mut postgres, self.root);
        // SAFETY: prctl is async-signal-safe; it only sets the signal this child gets when the
        // thread that forked it ends. SIGQUIT is PostgreSQL's immediate shutdown.
        unsafe {
            use std::os::unix::process::CommandExt;
            postgres.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The parent-death signal follows the forking *thread*, so fork from one that lives as
        // long as the server: it waits for the server's exit (which also reaps it).
        let (tx, rx) = std::sync::mpsc::channel();
        let (exit_tx, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || match postgres.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id() as i32));
                let _ = child.wait();
                let _ = exit_tx.send(());
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        });
        let pid = rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("starting postgres: {e}"));
        Running { pid, exited }
    }

    /// The URL of the maintenance database as the `aiom4b` superuser.
    fn admin_url(&self, port: u16) -> String {
        format!("postgres://aiom4b@127.0.0.1:{port}/postgres")
    }

    /// Waits until the server accepts connections (at most 30 s, then panics with its log).
    fn wait_ready(&self, admin: &str) {
        let t = Instant::now();
        loop {
            match postgres::Client::connect(admin, postgres::NoTls) {
                Ok(_) => return,
                Err(_) if t.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "the test PostgreSQL did not start: {e}\n{}",
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                ),
            }
        }
    }
}

/// A PostgreSQL server of one test's own, which it can stop and start again on the same port
/// and data (a server restart during a run). Dropped, it is stopped and its folder removed.
/// Run as root, it runs as `nobody`, like the shared one.
pub struct PrivateServer {
    cluster: Cluster,
    port: u16,
    running: Option<Running>,
}

impl PrivateServer {
    /// A new cluster in a folder of its own, started on a free loopback port.
    pub fn start() -> PrivateServer {
        static N: AtomicU32 = AtomicU32::new(0);
        remove_stale_folders();
        let dir = std::env::temp_dir().join(format!(
            "aiom4b-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let cluster = Cluster::init(dir);
        let port = free_port();
        let mut server = PrivateServer {
            cluster,
            port,
            running: None,
        };
        server.start_again();
        server
    }

    /// The URL of its `postgres` database (superuser `aiom4b`, trust authentication).
    pub fn url(&self) -> String {
        self.cluster.admin_url(self.port)
    }

    /// A URL of a new, empty database on it.
    pub fn fresh_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let mut c = postgres::Client::connect(&self.url(), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the private PostgreSQL: {e}"));
        let name = format!("p_{}", N.fetch_add(1, Ordering::Relaxed));
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating a database: {e}"));
        with_database(&self.url(), &name)
    }

    /// The loopback port it listens on (the same after [`PrivateServer::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it runs (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Fast shutdown (SIGINT: open transactions are rolled back, clients disconnected);
    /// returns once the server has exited. Nothing happens if it is stopped already.
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        // SAFETY: a signal to the server process this value started and has not reaped.
        unsafe { libc::kill(running.pid, libc::SIGINT) };
        if running
            .exited
            .recv_timeout(Duration::from_secs(60))
            .is_err()
        {
            panic!(
                "the private PostgreSQL (pid {}) did not stop within 60 s\n{}",
                running.pid,
                std::fs::read_to_string(self.cluster.dir.join("server.log")).unwrap_or_default()
            );
        }
    }

    /// Starts the stopped server again on the same port and data; returns once it accepts
    /// connections. Nothing happens if it runs.
    pub fn start_again(&mut self) {
        if self.running.is_none() {
            self.running = Some(self.cluster.spawn(self.port));
            self.cluster.wait_ready(&self.url());
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            // Immediate shutdown: the data is thrown away anyway.
            // SAFETY: as in `stop`.
            unsafe { libc::kill(running.pid, libc::SIGQUIT) };
            let _ = running.exited.recv_timeout(Duration::from_secs(30));
        }
        let _ = std::fs::remove_dir_all(&self.cluster.dir);
    }
}

fn as_user(cmd: &mut Command, root: bool) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if root {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

fn chown(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::chown(c.as_ptr(), NOBODY, NOBODY) };
    assert_eq!(
        rc,
        0,
        "chown {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, else `initdb` on the PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Removes the folders of earlier runs whose process is gone.
fn remove_stale_folders() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        // `aiom4b-pg-PID` (the shared server) or `aiom4b-pg-PID-N` (private ones).
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("aiom4b-pg-"))
            .and_then(|p| p.split('-').next()?.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_replace_the_last_segment() {
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "t_1"),
            "postgres://u@h:5/t_1"
        );
        assert_eq!(
            with_database("postgres://u@h:5/x?sslmode=disable", "t"),
            "postgres://u@h:5/t?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "t"), "postgres://u@h:5/t");
    }

    #[test]
    fn a_fresh_database_accepts_connections() {
        let url = fresh_database();
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let row = c.query_one("SELECT current_database()", &[]).unwrap();
        let name: String = row.get(0);
        assert!(url.ends_with(&name), "{url} vs {name}");
        let other = fresh_database();
        assert_ne!(url, other, "one database per call");
    }

    /// A private server stops (clients lose their connection, new ones are refused) and starts
    /// again on the same port with the same data; clients reconnect.
    #[test]
    fn a_private_server_stops_and_starts_again_with_its_data() {
        let mut server = PrivateServer::start();
        let url = server.fresh_database();
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (7)")
            .unwrap();
        let port = server.port();

        server.stop();
        assert!(!server.is_running());
        assert!(
            c.query_one("SELECT 1", &[]).is_err(),
            "the old connection is gone"
        );
        assert!(
            postgres::Client::connect(&url, postgres::NoTls).is_err(),
            "a stopped server refuses connections"
        );

        server.start_again();
        assert!(server.is_running());
        assert_eq!(server.port(), port);
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let n: i32 = c.query_one("SELECT n FROM t", &[]).unwrap().get(0);
        assert_eq!(n, 7, "the data survives the restart");

        let dir = server.cluster.dir.clone();
        assert!(dir.is_dir());
        drop(server);
        assert!(!dir.exists(), "dropped: its folder is removed");
        assert!(postgres::Client::connect(&url, postgres::NoTls).is_err());
    }
}
