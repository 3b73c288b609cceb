//! `ota-console broker-config`: imports the Alibaba device-secret CSV into the data directory,
//! and writes the files that secure an external Mosquitto (password file, ACL file, config
//! snippet) for the console and the users of `mqtt-users.txt`, with the gateways and
//! sub-devices the inventory knows.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use crate::access::credentials::{Authenticator, SecretTable, UserTable};
use crate::access::mosquitto::{self, MosquittoFiles};
use crate::access::rules::Rules;
use crate::access::site_ca::SiteCa;
use crate::i18n::tr;
use crate::private_fs;
use crate::protocol::registry;
use crate::store::Store;

/// File names written into the `--mosquitto` directory.
pub const PASSWORD_FILE: &str = "passwd";
pub const ACL_FILE: &str = "acl";
pub const CONF_FILE: &str = "ota-console.conf";

#[derive(Debug, Clone, Args)]
pub struct BrokerConfigArgs {
    /// Write `passwd`, `acl` and `ota-console.conf` for Mosquitto 2.0 into this directory.
    #[arg(long, value_name = "DIR")]
    pub mosquitto: Option<PathBuf>,

    /// First import this CSV exported from the Alibaba IoT console (ProductKey, DeviceName,
    /// DeviceSecret) into the data directory.
    #[arg(long, value_name = "FILE")]
    pub import_alibaba_csv: Option<PathBuf>,

    /// Add a user to `mqtt-users.txt` (for devices that log in with a user name and password:
    /// FogCloud devices and gateways, DJI docks, AWS things); give what it may act as with
    /// --identity. Its password (generated unless --password) is printed once.
    #[arg(long, value_name = "NAME", requires = "identity")]
    pub add_user: Option<String>,

    /// With --add-user: a device id it may act as (`fogcloud:pk/dn`, `dji:SN`, `aws:thing`,
    /// `aliyun:pk/dn`); repeat for a site user (a DJI dock's user names its drones too).
    #[arg(long, value_name = "ID", requires = "add_user")]
    pub identity: Vec<String>,

    /// With --add-user: this password instead of a generated one.
    #[arg(long, value_name = "PASSWORD", requires = "add_user")]
    pub password: Option<String>,

    /// Write the site CA's certificate (PEM; the CA is created on first use) to FILE: devices
    /// that connect over TLS (`--tls-listen`, `--https`) trust it.
    #[arg(long, value_name = "FILE")]
    pub export_ca: Option<PathBuf>,

    /// Issue a client certificate for mutual TLS whose CN is NAME: a device id
    /// (`dji:SN`, `fogcloud:pk/dn`, `aliyun:pk/dn`), `aws:thing` or a `mqtt-users.txt` user;
    /// the broker's TLS listener logs a client presenting it in as that identity. Written to
    /// --out as NAME.crt.pem and NAME.key.pem (0600).
    #[arg(long, value_name = "NAME", requires = "out")]
    pub issue_cert: Option<String>,

    /// With --issue-cert: the directory the certificate and key go to.
    #[arg(long, value_name = "DIR", requires = "issue_cert")]
    pub out: Option<PathBuf>,

    /// Where the console's credentials, `mqtt-users.txt` and the database live (default:
    /// $OTA_CONSOLE_DATA_DIR, else the XDG data dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// SQLite database with the known devices (default: in the data directory).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

pub fn run(args: &BrokerConfigArgs) -> anyhow::Result<()> {
    if args.mosquitto.is_none()
        && args.import_alibaba_csv.is_none()
        && args.add_user.is_none()
        && args.export_ca.is_none()
        && args.issue_cert.is_none()
    {
        bail!(tr!("cli.broker_config.nothing_to_do"));
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::firmware::default_data_dir);
    private_fs::create_private_dir(&data_dir)
        .with_context(|| tr!("cli.creating_data_dir", dir = data_dir.display()))?;
    if let Some(csv) = &args.import_alibaba_csv {
        let count = SecretTable::import(&data_dir, csv)?;
        eprintln!(
            "{}",
            tr!(
                "cli.broker_config.imported",
                count = count,
                csv = csv.display(),
                file = data_dir
                    .join(crate::access::credentials::SECRETS_FILE)
                    .display()
            )
        );
    }
    if let Some(user) = &args.add_user {
        add_user(&data_dir, user, args.password.as_deref(), &args.identity)?;
    }
    if let Some(file) = &args.export_ca {
        let ca = SiteCa::load_or_create(&data_dir)?;
        std::fs::write(file, ca.ca_pem())
            .with_context(|| tr!("cli.broker_config.writing_ca", file = file.display()))?;
        eprintln!(
            "{}",
            tr!("cli.broker_config.ca_written", file = file.display())
        );
    }
    if let (Some(name), Some(out)) = (&args.issue_cert, &args.out) {
        issue_cert(&data_dir, name, out)?;
    }
    if let Some(dir) = &args.mosquitto {
        let db = args
            .db
            .clone()
            .unwrap_or_else(|| data_dir.join("ota-console.db"));
        write_mosquitto(&data_dir, &db, dir)?;
    }
    Ok(())
}

/// Adds one user and prints its password (the only time it is shown outside the 0600 file).
fn add_user(
    data_dir: &Path,
    user: &str,
    password: Option<&str>,
    identities: &[String],
) -> anyhow::Result<()> {
    let generated = hex::encode(rand::random::<[u8; 16]>());
    let password = password.unwrap_or(&generated);
    let table = UserTable::add_user(data_dir, user, password, identities)?;
    let entry = table.get(user).with_context(|| {
        tr!(
            "cli.broker_config.user_not_written",
            user = format!("{user:?}")
        )
    })?;
    eprintln!(
        "{}",
        tr!(
            "cli.broker_config.user_added",
            user = format!("{user:?}"),
            identity = entry.identity,
            file = data_dir
                .join(crate::access::credentials::USERS_FILE)
                .display()
        )
    );
    println!("{password}");
    Ok(())
}

/// A client certificate and its key for `name`, signed by the site CA.
fn issue_cert(data_dir: &Path, name: &str, out: &Path) -> anyhow::Result<()> {
    let ca = SiteCa::load_or_create(data_dir)?;
    let (cert, key) = ca.issue_client(name)?;
    private_fs::create_private_dir(out)
        .with_context(|| tr!("cli.creating", path = out.display()))?;
    // A file name cannot hold `/` (FogCloud and Alibaba ids have one) or `:`.
    let stem: String = name
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    let cert_path = out.join(format!("{stem}.crt.pem"));
    let key_path = out.join(format!("{stem}.key.pem"));
    std::fs::write(&cert_path, cert)
        .with_context(|| tr!("cli.writing", path = cert_path.display()))?;
    // A fresh key replaces an earlier one (created only when absent, at 0600 from the start).
    match std::fs::remove_file(&key_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| tr!("cli.replacing", path = key_path.display())),
    }
    private_fs::private_file(&key_path, key.as_bytes())
        .with_context(|| tr!("cli.writing", path = key_path.display()))?;
    eprintln!(
        "{}",
        tr!(
            "cli.broker_config.cert_issued",
            name = format!("{name:?}"),
            cert = cert_path.display(),
            key = key_path.display()
        )
    );
    Ok(())
}

fn write_mosquitto(data_dir: &Path, db: &Path, dir: &Path) -> anyhow::Result<()> {
    let auth = Authenticator::load(data_dir)?;
    let inventory = Store::open(db)
        .and_then(|store| store.load_inventory())
        .with_context(|| tr!("cli.broker_config.reading_inventory", db = db.display()))?;
    let rules = Rules::with_gateways(
        registry::topic_routes(),
        inventory
            .iter()
            .filter_map(|d| d.gateway.as_ref().map(|gw| (&d.id, gw))),
    );
    let files = MosquittoFiles::build(&auth, &rules, rand::random);
    private_fs::private_dir(dir).with_context(|| tr!("cli.creating", path = dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| tr!("cli.resolving", path = dir.display()))?;
    let (pw, acl, conf) = (
        dir.join(PASSWORD_FILE),
        dir.join(ACL_FILE),
        dir.join(CONF_FILE),
    );
    write_file(&pw, files.password_file.as_bytes())?;
    write_file(&acl, files.acl_file.as_bytes())?;
    write_file(&conf, mosquitto::conf_snippet(&pw, &acl).as_bytes())?;
    for line in &files.skipped {
        eprintln!("{}", tr!("cli.broker_config.skipped", line = line));
    }
    // Known devices nobody can log in as: say so, or the operator will wonder why they are quiet.
    let covered: Vec<_> = auth.users.entries().map(|e| &e.identity).collect();
    for device in &inventory {
        let id = &device.id;
        let reachable = covered.iter().any(|identity| match identity {
            crate::access::Identity::Device(d) => d == id || device.gateway.as_ref() == Some(d),
            crate::access::Identity::Site { devices, .. } => {
                devices.contains(id)
                    || device
                        .gateway
                        .as_ref()
                        .is_some_and(|gw| devices.contains(gw))
            }
            _ => false,
        });
        if !reachable {
            eprintln!(
                "{}",
                tr!(
                    "cli.broker_config.no_credentials",
                    id = id,
                    file = data_dir
                        .join(crate::access::credentials::USERS_FILE)
                        .display()
                )
            );
        }
    }
    println!(
        "{}",
        tr!(
            "cli.broker_config.wrote",
            users = files.users,
            pw = pw.display(),
            acl = acl.display(),
            conf = conf.display()
        )
    );
    println!(
        "{}",
        tr!(
            "cli.broker_config.console_login",
            user = format!("{:?}", auth.console.username),
            file = data_dir
                .join(crate::access::credentials::CONSOLE_FILE)
                .display()
        )
    );
    Ok(())
}

/// Replaces `path` with `contents` (0600: the password file holds hashes, the ACL the fleet).
fn write_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::remove_file(path)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .with_context(|| tr!("cli.replacing", path = path.display()))?;
    private_fs::private_file(path, contents)
        .with_context(|| tr!("cli.writing", path = path.display()))
}
