//! nginx as the reference the firmware-server benches measure against: started with its own
//! temp config on a free 127.0.0.1 port (`daemon off`), stopped at the end.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// nginx with its own config, pid and logs in the temp dir; killed when stopped or dropped.
pub struct Nginx {
    child: Child,
    pub port: u16,
}

impl Nginx {
    /// The master's process id (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts nginx serving `www` with `worker_connections` per worker (and the open files
    /// they need).
    pub fn start(dir: &Path, www: &Path, worker_connections: usize) -> Nginx {
        let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("nginx is not installed: `apt-get install -y nginx`");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        // `user root` lets workers of a root-run nginx read the temp dir (ignored otherwise).
        let conf = format!(
            "daemon off;\nuser root;\nworker_processes auto;\npid {d}/nginx.pid;\n\
             worker_rlimit_nofile {files};\n\
             error_log {d}/error.log;\nevents {{ worker_connections {worker_connections}; }}\n\
             http {{\n access_log off;\n sendfile on;\n tcp_nopush on;\n\
             client_body_temp_path {d}/t1;\n proxy_temp_path {d}/t2;\n fastcgi_temp_path {d}/t3;\n\
             uwsgi_temp_path {d}/t4;\n scgi_temp_path {d}/t5;\n\
             server {{ listen 127.0.0.1:{port}; root {}; location / {{ }} }}\n}}\n",
            www.display(),
            files = worker_connections * 2 + 64,
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx config");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!(
                    "nginx exited with {status}; see {}",
                    dir.join("error.log").display()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    /// SIGTERM first: the master then stops its workers (SIGKILL would orphan them).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
