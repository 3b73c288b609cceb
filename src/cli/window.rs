//! The window (no subcommand): starts the engine with the connection options, optionally a
//! simulated demo fleet beside it, and hands both to the UI. If the engine cannot start, the
//! window opens all the same and shows why, with the ways out (`ui::start_failure`). The UI runs
//! on this thread; the engine and the fleet run on the tokio runtime's threads.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use super::connection::ConnectionArgs;
use super::demo::{self, Demo};
use crate::engine::{self, BrokerChoice, EmbeddedAccess, EngineHandle, FirmwareSource};
use crate::i18n::tr;
use crate::ui::{self, DemoDriver, UiOptions};

/// Set (to anything) with `--demo`: the story starts as soon as the fleet is heard.
pub const START_DEMO_ENV: &str = "OTA_CONSOLE_DEMO_START";

pub fn run(
    runtime: &tokio::runtime::Runtime,
    connection: &ConnectionArgs,
    demo: bool,
    lang: Option<crate::i18n::Lang>,
) -> anyhow::Result<()> {
    if demo && connection.tls.https {
        anyhow::bail!(tr!("cli.window.demo_https"));
    }
    let mut config = connection.engine_config()?;
    config.resume_unfinished = true;
    if demo {
        // The demo keeps its devices and campaigns apart from the real ones, and every start
        // tells the story from the beginning: its own directory is cleared.
        config.data_dir = config.data_dir.join("demo");
        config.db_path = config.data_dir.join("ota-console.db");
        demo::fresh_demo_dir(&config.data_dir)?;
        if let FirmwareSource::Embedded {
            bind, public_base, ..
        } = &mut config.firmware
            && public_base.is_none()
        {
            *public_base = demo_public_base(bind);
        }
        demo_broker_access(&mut config.broker);
    }
    let started = runtime
        .block_on(engine::start(config.clone()))
        .or_else(|e| {
            // A demo must not die because port 1883 is taken: fall back to free ports.
            if demo && matches!(config.broker, BrokerChoice::Embedded { .. }) {
                tracing::warn!("{}", tr!("cli.window.demo_free_ports", why = e));
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
    let demo_driver: Option<Arc<dyn DemoDriver>> = if demo && engine_started {
        let story = runtime
            .block_on(Demo::launch(&handle, &config.data_dir, demo_secure))
            .context(tr!("cli.window.starting_demo"))?;
        // Scripts that show the window mid-rollout (scripts/screenshots) start the story
        // without a click.
        if std::env::var_os(START_DEMO_ENV).is_some() {
            story.spawn(runtime.handle(), handle.clone(), false);
        }
        Some(Arc::new(WindowDemo::new(story, runtime.handle().clone())))
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
            target_version: demo.then(|| demo::TO_VERSION.to_owned()),
            demo_driver,
            lang,
            ..UiOptions::default()
        },
    )
}

/// The demo as the window drives it: each click runs on the runtime, never on the UI thread.
#[derive(Debug)]
pub struct WindowDemo {
    demo: Arc<Demo>,
    runtime: tokio::runtime::Handle,
}

impl WindowDemo {
    pub fn new(demo: Arc<Demo>, runtime: tokio::runtime::Handle) -> WindowDemo {
        WindowDemo { demo, runtime }
    }
}

impl DemoDriver for WindowDemo {
    fn start(&self, engine: &EngineHandle) {
        self.demo.spawn(&self.runtime, engine.clone(), false);
    }

    fn replay(&self, engine: &EngineHandle) {
        self.demo.spawn(&self.runtime, engine.clone(), true);
    }

    fn busy(&self) -> bool {
        self.demo.busy()
    }

    fn take_error(&self) -> Option<String> {
        self.demo.take_error()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
