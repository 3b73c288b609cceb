//! The TLS options of the embedded broker and firmware server (`--tls-listen`, `--https`, the
//! certificate, client certificates), shared by the window, the commands and `broker`.
//!
//! Owns: turning them into rustls server configurations — from the operator's certificate
//! files, or from a server certificate the data directory's site CA issues at each start for
//! this machine's names (so it follows the host's addresses). Must never: create a site CA when
//! no TLS was asked for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::access::site_ca::{SiteCa, local_server_names};
use crate::access::tls::{ClientCerts, ServerIdentity, certs_from_pem_file, server_config};
use crate::i18n::tr;

/// Whether the broker's TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientCertMode {
    /// Never asked: devices log in with user names and passwords (or Alibaba signatures).
    Off,
    /// Asked, not required: a certificate the trusted CA issued logs the device in as the
    /// identity its CN names; devices without one log in with a password.
    Optional,
    /// Every client must present a certificate of the trusted CA.
    Required,
}

#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Also accept MQTT over TLS on this address (e.g. 0.0.0.0:8883) on the embedded broker,
    /// with the same logins and topic rules.
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<SocketAddr>,

    /// Serve firmware over HTTPS (the same certificate as the broker's TLS listener).
    #[arg(long)]
    pub https: bool,

    /// Server certificate chain (PEM) for --tls-listen and --https. Without it the data
    /// directory's site CA (created on first use) issues one for this machine's names.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Another name (host name or IP address) devices use to reach this machine, for the site
    /// CA's server certificate (repeatable; this machine's names are always in it).
    #[arg(long = "tls-name", value_name = "NAME")]
    pub tls_names: Vec<String>,

    /// Client certificates on the TLS listener.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ClientCertMode::Optional)]
    pub client_certs: ClientCertMode,

    /// CA certificate(s) (PEM) whose client certificates are accepted, instead of the site CA.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
}

/// The server configurations the options ask for.
#[derive(Debug, Clone, Default)]
pub struct TlsSetup {
    /// The broker's TLS listener: its address and configuration.
    pub broker: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    /// The firmware server's HTTPS configuration.
    pub https: Option<Arc<rustls::ServerConfig>>,
}

impl TlsArgs {
    /// Builds what was asked for; nothing (and no site CA) when neither --tls-listen nor
    /// --https was given. `extra_name` is the host of `--public-url`, if any.
    pub fn setup(&self, data_dir: &Path, extra_name: Option<&str>) -> anyhow::Result<TlsSetup> {
        if self.tls_listen.is_none() && !self.https {
            return Ok(TlsSetup::default());
        }
        let mut site_ca = None;
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => ServerIdentity::from_pem_files(cert, key)?,
            _ => {
                let ca = SiteCa::load_or_create(data_dir).context(tr!("cli.tls.site_ca"))?;
                let mut names = local_server_names();
                names.extend(self.tls_names.iter().cloned());
                names.extend(extra_name.map(str::to_owned));
                names.dedup();
                let identity = ca.issue_server(&names)?;
                site_ca = Some(ca);
                identity
            }
        };
        let client_roots = || -> anyhow::Result<Vec<_>> {
            match (&self.client_ca, &site_ca) {
                (Some(file), _) => Ok(certs_from_pem_file(file)?),
                (None, Some(ca)) => Ok(vec![ca.certificate()]),
                (None, None) => Ok(vec![
                    SiteCa::load_or_create(data_dir)
                        .context(tr!("cli.tls.site_ca_clients"))?
                        .certificate(),
                ]),
            }
        };
        let broker = match self.tls_listen {
            Some(listen) => {
                let clients = match self.client_certs {
                    ClientCertMode::Off => ClientCerts::NotAsked,
                    ClientCertMode::Optional => ClientCerts::Optional(client_roots()?),
                    ClientCertMode::Required => ClientCerts::Required(client_roots()?),
                };
                Some((listen, server_config(&identity, clients)?))
            }
            None => None,
        };
        let https = if self.https {
            Some(server_config(&identity, ClientCerts::NotAsked)?)
        } else {
            None
        };
        Ok(TlsSetup { broker, https })
    }
}

/// The host of an `http(s)://host[:port]/…` URL (IPv6 without brackets).
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tls: TlsArgs,
    }

    fn args(list: &[&str]) -> TlsArgs {
        Cli::parse_from(std::iter::once("x").chain(list.iter().copied())).tls
    }

    #[test]
    fn no_tls_asked_makes_no_site_ca() {
        let dir = tempfile::tempdir().unwrap();
        let setup = args(&[]).setup(dir.path(), None).unwrap();
        assert!(setup.broker.is_none() && setup.https.is_none());
        assert!(!dir.path().join("site-ca").exists());
    }

    #[test]
    fn the_site_ca_serves_the_broker_and_https_with_client_certificates_optional() {
        let dir = tempfile::tempdir().unwrap();
        let setup = args(&["--tls-listen", "127.0.0.1:0", "--https"])
            .setup(dir.path(), Some("ota.lab.example"))
            .unwrap();
        let (listen, _) = setup.broker.expect("a broker TLS listener");
        assert_eq!(listen.port(), 0);
        assert!(setup.https.is_some());
        assert!(dir.path().join("site-ca").join("ca.pem").exists());
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = args(&[
            "--https",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .setup(dir.path(), None)
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/cert.pem"),
            "{err:#}"
        );
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://ota.lab:8443/fw"), Some("ota.lab"));
        assert_eq!(url_host("http://10.0.0.2"), Some("10.0.0.2"));
        assert_eq!(url_host("http://[fe80::1]:80/x"), Some("fe80::1"));
        assert_eq!(url_host("nonsense"), None);
    }
}
