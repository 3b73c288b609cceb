//! A real Mosquitto (Debian package `mosquitto`) for black-box tests: its own config in a temp
//! dir, a free 127.0.0.1 port, SIGKILL on drop. Without mosquitto installed, tests using it FAIL
//! with a message saying how to install it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

pub fn mosquitto_binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    let on_path = Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        on_path.is_ok(),
        "mosquitto is not installed; these tests need it: `apt-get install -y mosquitto`"
    );
    "mosquitto".into()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto process, killed with SIGKILL when dropped.
pub struct Mosquitto {
    pub child: Child,
    pub port: u16,
    conf: PathBuf,
}

impl Mosquitto {
    /// Writes `<dir>/mosquitto.conf` with a listener on `port` plus `extra` lines and starts it.
    pub fn start(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        // `user root` keeps a root-run mosquitto from switching to the `mosquitto` user, which
        // could not read the temp dir; it has no effect when not run as root. What a fleet
        // needs (README, "broker settings a fleet needs"): nothing queued for the console's
        // persistent session is dropped (`max_queued_messages 0`, default 1000) and sessions
        // outlive any test (`persistent_client_expiration`). `persistence false`: a restart
        // loses every session, the case the console must report (tests that want sessions to
        // survive a restart add `persistence true` in `extra`, which comes later and wins).
        let text = format!(
            "user root\nlistener {port} 127.0.0.1\nmax_queued_messages 0\n\
             persistent_client_expiration 1d\npersistence false\nlog_dest file {}\n{extra}\n",
            log.display()
        );
        std::fs::write(&conf, text).unwrap();
        Self::spawn(conf, port)
    }

    fn spawn(conf: PathBuf, port: u16) -> Mosquitto {
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let mut m = Mosquitto { child, port, conf };
        m.wait_listening();
        m
    }

    fn wait_listening(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.conf.with_file_name("mosquitto.log"))
                    .unwrap_or_default();
                panic!("mosquitto exited with {status}; log:\n{log}");
            }
            assert!(
                started.elapsed() < WAIT,
                "mosquitto did not listen within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the broker keeps its sockets open but answers nothing.
    pub fn freeze(&mut self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: no clean disconnect, no persistence, the worst case for the link.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn restart(&mut self) {
        *self = Self::spawn(self.conf.clone(), self.port);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mosquitto {
    /// `mqtt://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}
