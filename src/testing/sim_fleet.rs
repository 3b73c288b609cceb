//! Simulated fleets as child processes, for the benchmarks that load a console from outside
//! (`benches/load.rs`, `benches/fleet_run.rs`): `ota-console sim --json` processes whose
//! running totals are read off their output, killed if the benchmark panics, and the `/proc`
//! readings (CPU, memory) those benchmarks report.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// A child process killed (SIGKILL) when dropped, so a panicking bench leaves nothing behind.
#[derive(Debug)]
pub struct Guarded(pub Child);

impl Guarded {
    /// Asks the process to stop the way Ctrl-C does (SIGINT), so it prints its final totals or
    /// report; what it answers is read elsewhere.
    pub fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `ota-console sim --json` process and what it last printed.
#[derive(Debug)]
pub struct SimProcess {
    pub child: Guarded,
    seen: Arc<Mutex<SimSeen>>,
}

#[derive(Debug, Default)]
struct SimSeen {
    /// The totals of its latest `summary` line.
    latest: Option<Value>,
    /// The totals of its `stopped` line.
    stopped: Option<Value>,
}

impl SimProcess {
    /// Starts `command` (an `ota-console sim --json …`) with its output read by a thread of
    /// its own.
    ///
    /// # Panics
    /// When the process cannot start.
    pub fn spawn(command: &mut Command) -> SimProcess {
        #[expect(
            clippy::expect_used,
            reason = "a benchmark whose simulator cannot start has nothing to measure"
        )]
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("ota-console sim starts");
        let stdout = child.stdout.take();
        let seen = Arc::new(Mutex::new(SimSeen::default()));
        let writer = seen.clone();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let Ok(mut seen) = writer.lock() else { return };
                match v["event"].as_str() {
                    Some("summary") => seen.latest = Some(v["totals"].clone()),
                    Some("stopped") => seen.stopped = Some(v["totals"].clone()),
                    _ => {}
                }
            }
        });
        SimProcess {
            child: Guarded(child),
            seen,
        }
    }

    /// One counter of its latest (or, with `stopped`, final) totals; 0 before it printed any.
    pub fn total(&self, field: &str, stopped: bool) -> u64 {
        let Ok(seen) = self.seen.lock() else { return 0 };
        let totals = if stopped { &seen.stopped } else { &seen.latest };
        totals.as_ref().and_then(|t| t[field].as_u64()).unwrap_or(0)
    }

    /// Whether it has printed its final totals.
    pub fn has_stopped(&self) -> bool {
        self.seen.lock().is_ok_and(|s| s.stopped.is_some())
    }

    /// Its final totals, once it printed them.
    pub fn final_totals(&self) -> Option<serde_json::Map<String, Value>> {
        match &self.seen.lock().ok()?.stopped {
            Some(Value::Object(t)) => Some(t.clone()),
            _ => None,
        }
    }
}

/// Sum of one counter over the simulators' latest (or final) totals.
pub fn sim_sum(sims: &[SimProcess], field: &str, stopped: bool) -> u64 {
    sims.iter().map(|s| s.total(field, stopped)).sum()
}

/// User + system CPU seconds of a process, `"self"` or a pid (0 once it is gone).
pub fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
