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
//! panics and says what to install.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    let bin = bin_dir().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: the job store tests need Debian's `postgresql` \
             package (scripts/setup.sh installs it), or AIOM4B_TEST_DATABASE_URL pointing at a \
             server where they may create databases"
        )
    });
    remove_stale_folders();
    let dir = std::env::temp_dir().join(format!("aiom4b-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        chown(&dir);
    }
    let data = dir.join("data");
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
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = as_user(&mut initdb, root).output().expect("running initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
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
            std::fs::File::create(dir.join("server.log")).unwrap(),
        ));
    as_user(&mut postgres, root);
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
    // long as the process.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = postgres.spawn();
        let ok = child.is_ok();
        let _ = tx.send(child.map(|_| ()));
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("starting postgres: {e}"));
    let admin = format!("postgres://aiom4b@127.0.0.1:{port}/postgres");
    let t = Instant::now();
    loop {
        match postgres::Client::connect(&admin, postgres::NoTls) {
            Ok(_) => break,
            Err(e) if t.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!(
                "the test PostgreSQL did not start: {e}\n{}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            ),
        }
    }
    Server { admin }
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
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("aiom4b-pg-"))
            .and_then(|p| p.parse::<i32>().ok())
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
}
