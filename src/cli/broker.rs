//! `ota-console broker`: the embedded MQTT broker alone, for devices and simulators on the LAN.
//! Secure by default: it admits the console and the devices with credentials in the data
//! directory, each to its own topics; `--open-broker` admits anyone.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::access::credentials::{Authenticator, CONSOLE_FILE, SECRETS_FILE, USERS_FILE};
use crate::i18n::tr;
use crate::store::Store;
use crate::transport::broker::{BrokerSettings, BrokerTls, EmbeddedBroker};

#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:1883")]
    pub listen: SocketAddr,

    /// Let anyone who reaches the broker publish and subscribe to anything (no credentials, no
    /// topic rules).
    #[arg(long)]
    pub open_broker: bool,

    #[command(flatten)]
    pub tls: super::tls::TlsArgs,

    /// Where the credentials (`broker-console.json`, `alibaba-device-secrets.csv`,
    /// `mqtt-users.txt`) and the device inventory live (default: $OTA_CONSOLE_DATA_DIR, else
    /// the XDG data dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Runs the broker until Ctrl-C.
pub async fn run(args: &BrokerArgs) -> anyhow::Result<()> {
    if args.tls.https {
        anyhow::bail!(tr!("cli.broker.no_https"));
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::firmware::default_data_dir);
    let tls = args.tls.setup(&data_dir, None)?;
    let mut settings = if args.open_broker {
        BrokerSettings::open(args.listen)
    } else {
        BrokerSettings::secure(
            args.listen,
            data_dir.clone(),
            crate::protocol::registry::topic_routes(),
        )
    };
    settings.tls = tls
        .broker
        .map(|(listen, server)| BrokerTls { listen, server });
    let broker = EmbeddedBroker::start(settings).context(tr!("cli.broker.embedded"))?;
    println!(
        "{}",
        tr!("cli.broker.listening", addr = broker.local_addr())
    );
    if let Some(tls) = broker.tls_addr() {
        println!("{}", tr!("cli.broker.tls", addr = tls));
    }
    if args.open_broker {
        eprintln!("{}", tr!("cli.broker.open", addr = broker.local_addr()));
    } else {
        describe_credentials(&data_dir)?;
        tell_gateways(&broker, &data_dir);
    }
    tokio::signal::ctrl_c()
        .await
        .context(tr!("cli.waiting_for_ctrl_c"))?;
    Ok(())
}

/// Says who may log in (never the secrets themselves).
fn describe_credentials(data_dir: &std::path::Path) -> anyhow::Result<()> {
    // The same loading the gate does at start: one reader of the three files.
    let Authenticator {
        console,
        secrets,
        users,
    } = Authenticator::load(data_dir)?;
    eprintln!(
        "{}",
        tr!(
            "cli.broker.secure",
            user = format!("{:?}", console.username),
            console_file = data_dir.join(CONSOLE_FILE).display(),
            secrets = secrets.len(),
            secrets_file = data_dir.join(SECRETS_FILE).display(),
            users = users.entries().count(),
            users_file = data_dir.join(USERS_FILE).display()
        )
    );
    Ok(())
}

/// The gateways of the inventory (a DJI dock may publish its drone's state and osd).
fn tell_gateways(broker: &EmbeddedBroker, data_dir: &std::path::Path) {
    let db = data_dir.join("ota-console.db");
    if !db.exists() {
        return;
    }
    match Store::open(&db).and_then(|store| store.load_inventory()) {
        Ok(devices) => {
            for device in devices {
                if let Some(gateway) = &device.gateway {
                    broker.set_gateway(&device.id, Some(gateway));
                }
            }
        }
        Err(e) => eprintln!(
            "{}",
            tr!("cli.broker.no_gateways", db = db.display(), why = e)
        ),
    }
}
