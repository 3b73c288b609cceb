//! The window (no subcommand): starts the engine with the connection options, optionally a
//! simulated demo fleet beside it, and hands both to the UI. If the engine cannot start, the
//! window opens all the same and shows why, with the ways out (`ui::start_failure`). The UI runs on this thread; the
//! engine and the fleet run on the tokio runtime's threads.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::connection::ConnectionArgs;
use crate::engine::{self, BrokerChoice, Command, EmbeddedAccess, FirmwareSource};
use crate::sim::{Behaviour, FaultOdds, SimConfig, SimFleet, SimLogins};
use crate::ui::{self, UiOptions};

/// Size of the demo firmware file written on first use.
const DEMO_FIRMWARE_BYTES: usize = 4 * 1024 * 1024;

pub fn run(
    runtime: &tokio::runtime::Runtime,
    connection: &ConnectionArgs,
    demo: bool,
    lang: Option<crate::i18n::Lang>,
) -> anyhow::Result<()> {
    if demo && connection.tls.https {
        anyhow::bail!(
            "--demo's simulated devices download firmware over plain HTTP: leave out --https"
        );
    }
    let mut config = connection.engine_config()?;
    config.resume_unfinished = true;
    if demo {
        // The demo keeps its devices and campaigns apart from the real ones.
        config.data_dir = config.data_dir.join("demo");
        config.db_path = config.data_dir.join("ota-console.db");
        if let FirmwareSource::Embedded {
            bind, public_base, ..
        } = &mut config.firmware
            && public_base.is_none()
        {
            *public_base = demo_public_base(bind);
        }
        demo_broker_access(&mut config.broker);
    }
    let demo_firmware = demo.then(|| config.data_dir.join("demo-firmware-2.0.0.bin"));
    let started = runtime
        .block_on(engine::start(config.clone()))
        .or_else(|e| {
            // A demo must not die because port 1883 is taken: fall back to free ports.
            if demo && matches!(config.broker, BrokerChoice::Embedded { .. }) {
                tracing::warn!("{e}; the demo uses free ports instead");
                config.broker = BrokerChoice::Embedded {
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    access: EmbeddedAccess::Open,
                    tls: None,
                };
                config.firmware = FirmwareSource::Embedded {
                    bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                    public_base: None,
                    tls: None,
                };
                runtime.block_on(engine::start(config.clone()))
            } else {
                Err(e)
            }
        });
    let engine_started = started.is_ok();
    // Whatever failed, the window opens: it shows the failure with the ways out (use the broker
    // already on the port, other ports, a profile, retry) and the connector starts the engine
    // the operator chooses.
    let first = ui::Connector::first(runtime.handle().clone(), config.clone(), started);
    let handle = first.handle.clone();
    let demo_secure = matches!(
        config.broker,
        BrokerChoice::Embedded {
            access: EmbeddedAccess::Secure,
            ..
        }
    );
    let _fleet = if demo && engine_started {
        if let Some(path) = &demo_firmware {
            write_demo_firmware(path)?;
            let _ = handle.send(Command::ImportFirmware {
                path: path.clone(),
                reply: None,
            });
        }
        let mut fleet_config = demo_fleet(handle.broker_url());
        if demo_secure {
            // A demo broker reachable from the network stays secure: its devices get credentials.
            let (logins, _) = SimLogins::provision(&config.data_dir, &fleet_config)
                .context("giving the demo devices credentials")?;
            fleet_config.logins = std::sync::Arc::new(logins);
        }
        let fleet = runtime
            .block_on(SimFleet::start(fleet_config))
            .context("starting the demo fleet")?;
        Some(fleet)
    } else {
        None
    };
    let _enter = runtime.enter();
    ui::run(
        handle,
        UiOptions {
            demo,
            // The connection dialog restarts the engine on the runtime with this base
            // configuration.
            connector: Some(first.connector),
            start_failure: first.failure,
            // The demo package is version 2.0.0 of a fleet on 1.0.0: ready to roll out.
            target_version: demo.then(|| "2.0.0".to_owned()),
            lang,
            ..UiOptions::default()
        },
    )
}

/// The demo's broker serves devices in this process: on a wildcard address it listens on
/// loopback only, and there it is open (nothing but this machine reaches it). A demo told to
/// listen on a network address keeps the broker secure.
fn demo_broker_access(broker: &mut BrokerChoice) {
    if let BrokerChoice::Embedded {
        listen,
        access,
        tls,
    } = broker
    {
        if listen.ip().is_unspecified() {
            listen.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
        }
        // A TLS listener on a network address would open the broker to the network too.
        let tls_local = tls.as_ref().is_none_or(|t| t.listen.ip().is_loopback());
        if listen.ip().is_loopback() && tls_local {
            *access = EmbeddedAccess::Open;
        }
    }
}

/// The simulated devices live in this process, so loopback always reaches the server. A
/// wildcard bind is announced as loopback; a wildcard bind on port 0 becomes a loopback bind
/// (the port is only known once bound, and the server then derives the base itself).
fn demo_public_base(bind: &mut SocketAddr) -> Option<String> {
    if !bind.ip().is_unspecified() {
        return None;
    }
    if bind.port() == 0 {
        *bind = SocketAddr::from(([127, 0, 0, 1], 0));
        return None;
    }
    Some(format!("http://127.0.0.1:{}", bind.port()))
}

/// The demo fleet: every kind of unit of every dialect's simulator (as many as each kind's
/// `demo` says), a few devices that fail, downloads slow enough that progress is visible.
pub fn demo_fleet(broker_url: &str) -> SimConfig {
    SimConfig {
        broker_url: broker_url.to_owned(),
        units: crate::sim::demo_units(&crate::protocol::registry::sim_factories()),
        version: "1.0.0".into(),
        name_prefix: "demo".into(),
        seed: 2026,
        behaviour: Behaviour {
            bandwidth_bytes_per_sec: Some(512 * 1024),
            install: Duration::from_secs(4),
            faults: FaultOdds {
                download: 0.04,
                verify: 0.04,
                flash: 0.04,
                reject: 0.25,
                silent: 0.02,
                offline_mid_download: 0.04,
            },
            ..Behaviour::default()
        },
        ..SimConfig::default()
    }
}

fn write_demo_firmware(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Deterministic, incompressible-looking bytes: the same demo package every time.
    let mut state: u32 = 0x2026_1123;
    let bytes: Vec<u8> = (0..DEMO_FIRMWARE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_fleet_has_every_kind_of_unit_as_before() {
        let cfg = demo_fleet("mqtt://127.0.0.1:1883");
        let units: Vec<_> = cfg
            .units
            .iter()
            .map(|u| (u.kind.flag, u.count, u.members))
            .collect();
        // 24 Alibaba devices, 8 FogCloud devices, 2 gateways of 8, 4 docks, 6 AWS things.
        assert_eq!(
            units,
            [
                ("aliyun", 24, 0),
                ("fogcloud", 8, 0),
                ("fogcloud-gateways", 2, 8),
                ("dji-docks", 4, 0),
                ("aws", 6, 0)
            ]
        );
        cfg.validate().unwrap();
    }

    #[test]
    fn the_demo_broker_is_open_only_when_nothing_but_loopback_reaches_it() {
        let embedded = |listen: &str, tls: Option<&str>| BrokerChoice::Embedded {
            listen: listen.parse().unwrap(),
            access: EmbeddedAccess::Secure,
            tls: tls.map(|t| crate::transport::broker::BrokerTls {
                listen: t.parse().unwrap(),
                server: test_server_config(),
            }),
        };
        let access_after = |mut broker: BrokerChoice| {
            demo_broker_access(&mut broker);
            match broker {
                BrokerChoice::Embedded { access, .. } => access,
                BrokerChoice::External(_) => unreachable!(),
            }
        };
        assert_eq!(
            access_after(embedded("0.0.0.0:1883", None)),
            EmbeddedAccess::Open
        );
        assert_eq!(
            access_after(embedded("127.0.0.1:1883", Some("127.0.0.1:8883"))),
            EmbeddedAccess::Open
        );
        assert_eq!(
            access_after(embedded("0.0.0.0:1883", Some("0.0.0.0:8883"))),
            EmbeddedAccess::Secure
        );
        assert_eq!(
            access_after(embedded("192.168.1.5:1883", None)),
            EmbeddedAccess::Secure
        );
    }

    fn test_server_config() -> std::sync::Arc<rustls::ServerConfig> {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::access::site_ca::SiteCa::load_or_create(dir.path()).unwrap();
        let identity = ca.issue_server(&["127.0.0.1".to_owned()]).unwrap();
        crate::access::tls::server_config(&identity, crate::access::tls::ClientCerts::NotAsked)
            .unwrap()
    }

    #[test]
    fn demo_announces_loopback() {
        let mut bind: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            demo_public_base(&mut bind).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        let mut bind: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert_eq!(demo_public_base(&mut bind), None);
        assert_eq!(bind, "127.0.0.1:0".parse().unwrap());
        let mut bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(demo_public_base(&mut bind), None);
        let mut bind: SocketAddr = "192.168.1.5:8080".parse().unwrap();
        assert_eq!(demo_public_base(&mut bind), None);
    }
}
