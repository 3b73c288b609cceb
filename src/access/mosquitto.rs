//! The files that secure an external Mosquitto (2.0) the way the embedded broker is secured.
//!
//! Owns the text of three files, generated from [`Authenticator`] and [`Rules`]:
//! - the password file: `user:$7$ITER$salt$hash`, PBKDF2-HMAC-SHA512 with a 12-byte salt and a
//!   64-byte hash in standard base64, the format `mosquitto_passwd` 2.0 writes (it uses 101
//!   iterations; we use more, which the `$7$` format carries and Mosquitto 2.0.11 accepts);
//! - the ACL file: `user` blocks with `topic write` (publish) and `topic read` (subscribe) lines,
//!   listing exactly what [`Rules::grants`] allows. No `pattern` rules: `%c` is the client id,
//!   which a client chooses freely (a pattern on it would let anyone who can log in act as any
//!   device), and `%u` substitutes one topic level, while Alibaba and FogCloud topics carry the
//!   device in two (product key and name) and a site user stands for several devices;
//! - a `mosquitto.conf` snippet that turns them on with `allow_anonymous false`.
//!
//! What Mosquitto cannot do: check Alibaba signatures (the password changes with the client
//! id's timestamp), so Alibaba devices on Mosquitto need a `mqtt-users.txt` entry; their secrets
//! are reported as skipped. Identities whose topics contain whitespace are skipped too: the ACL
//! file format cannot say them without ambiguity.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::credentials::Authenticator;
use super::rules::{Grants, Identity, Rules};

/// PBKDF2 iterations of the hashes we write.
pub const ITERATIONS: u32 = 10_000;
/// Salt length `mosquitto_passwd` uses.
pub const SALT_BYTES: usize = 12;

/// One password-file line (without the newline) with the given salt.
pub fn password_line(
    username: &str,
    password: &str,
    salt: &[u8; SALT_BYTES],
    iterations: u32,
) -> String {
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, iterations, &mut hash);
    format!(
        "{username}:$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    )
}

/// The three files, and what could not be put in them.
#[derive(Debug, Clone, Default)]
pub struct MosquittoFiles {
    pub password_file: String,
    pub acl_file: String,
    /// One line per skipped user or device, for the operator.
    pub skipped: Vec<String>,
    /// How many users the files hold (the console included).
    pub users: usize,
}

impl MosquittoFiles {
    /// The files for the console and every `mqtt-users.txt` entry. `salt` gives each user's
    /// salt (random in use, fixed in tests).
    pub fn build(
        auth: &Authenticator,
        rules: &Rules,
        mut salt: impl FnMut() -> [u8; SALT_BYTES],
    ) -> MosquittoFiles {
        let mut files = MosquittoFiles::default();
        let mut acl = String::from(
            "# Written by `ota-console broker-config`; regenerate rather than edit.\n\
             # Each user may publish (write) only its own uplink topics and subscribe (read) only\n\
             # to its own downlink topics; only the console may use wildcards or publish downlink.\n",
        );
        let mut add =
            |files: &mut MosquittoFiles, username: &str, password: &str, identity: &Identity| {
                let grants = rules.grants(identity);
                if let Some(bad) = grants
                    .publish
                    .iter()
                    .chain(&grants.subscribe)
                    .find(|t| t.contains(char::is_whitespace))
                {
                    files.skipped.push(format!(
                        "user {username:?}: topic {bad:?} contains whitespace"
                    ));
                    return;
                }
                let _ = writeln!(
                    files.password_file,
                    "{}",
                    password_line(username, password, &salt(), ITERATIONS)
                );
                let _ = writeln!(acl, "\n# {identity}\nuser {username}");
                write_grants(&mut acl, &grants);
                files.users += 1;
            };
        add(
            &mut files,
            &auth.console.username,
            &auth.console.password,
            &Identity::Console,
        );
        for entry in auth.users.entries() {
            if entry.username == auth.console.username {
                files.skipped.push(format!(
                    "user {:?}: the console's own user name",
                    entry.username
                ));
                continue;
            }
            add(
                &mut files,
                &entry.username,
                &entry.password,
                &entry.identity,
            );
        }
        for device in auth.secrets.devices() {
            files.skipped.push(format!(
                "{device}: Mosquitto cannot check Alibaba signatures; give it a line in mqtt-users.txt"
            ));
        }
        files.acl_file = acl;
        files
    }
}

fn write_grants(acl: &mut String, grants: &Grants) {
    for topic in &grants.publish {
        let _ = writeln!(acl, "topic write {topic}");
    }
    for filter in &grants.subscribe {
        let _ = writeln!(acl, "topic read {filter}");
    }
}

/// The `mosquitto.conf` lines that use the two files.
pub fn conf_snippet(password_file: &Path, acl_file: &Path) -> String {
    format!(
        "# Written by `ota-console broker-config`: include it from mosquitto.conf\n\
         # (`include_dir`) or copy these lines in. Mosquitto must be able to read both files\n\
         # (e.g. `chown mosquitto: {pw}`); keep them away from everyone else.\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {pw}\n\
         acl_file {acl}\n",
        pw = password_file.display(),
        acl = acl_file.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::credentials::{ConsoleCredentials, SecretTable, UserTable};

    #[test]
    fn password_lines_have_mosquittos_format_and_a_known_hash() {
        let line = password_line("alice", "secret", &[7u8; SALT_BYTES], 101);
        let (user, hash) = line.split_once(':').unwrap();
        assert_eq!(user, "alice");
        let parts: Vec<&str> = hash.split('$').collect();
        assert_eq!(parts[..3], ["", "7", "101"]);
        assert_eq!(STANDARD.decode(parts[3]).unwrap(), [7u8; SALT_BYTES]);
        assert_eq!(STANDARD.decode(parts[4]).unwrap().len(), 64);
        // Python: base64.b64encode(hashlib.pbkdf2_hmac("sha512", b"secret", bytes([7]*12), 101))
        assert_eq!(
            parts[4],
            "6ZQ2yRzvC8IBaKHF1SkHNXEXdjUM/JI6hteW8lTabANPHYldnRXh9Hz30Wfv77tWFerkNupf/aEFu58qFdtQfQ=="
        );
    }

    #[test]
    fn files_hold_the_console_and_each_user_with_exact_rules() {
        let auth = Authenticator {
            console: ConsoleCredentials {
                username: "ota-console-1".into(),
                password: "pw".into(),
            },
            secrets: SecretTable::from_csv(b"ProductKey,DeviceName,DeviceSecret\npk,dn,s\n", "t")
                .unwrap(),
            users: UserTable::parse("dock pw1 dji:DOCK1\nodd pw2 dji:DOCK2\n", "u").unwrap(),
        };
        let drone = "dji:DRONE1".parse().unwrap();
        let dock = "dji:DOCK1".parse().unwrap();
        // A drone whose serial number has a space: its dock's rules cannot be written.
        let (spaced, dock2) = ("dji:DRONE 2".parse().unwrap(), "dji:DOCK2".parse().unwrap());
        let rules = Rules::with_gateways(
            crate::protocol::registry::topic_routes(),
            [(&drone, &dock), (&spaced, &dock2)],
        );
        let files = MosquittoFiles::build(&auth, &rules, || [1u8; SALT_BYTES]);
        assert_eq!(files.users, 2);
        assert_eq!(files.password_file.lines().count(), 2);
        assert!(files.password_file.starts_with("ota-console-1:$7$10000$"));
        assert!(
            files
                .acl_file
                .contains("user ota-console-1\ntopic write #\ntopic write $aws/#\ntopic read #\n")
        );
        assert!(files.acl_file.contains("user dock\n"));
        assert!(
            files
                .acl_file
                .contains("topic write thing/product/DRONE1/state\n")
        );
        assert!(
            files
                .acl_file
                .contains("topic read thing/product/DOCK1/services\n")
        );
        assert!(!files.acl_file.contains("pattern"));
        assert!(
            files
                .skipped
                .iter()
                .any(|s| s.contains("\"odd\"") && s.contains("whitespace"))
        );
        assert!(files.skipped.iter().any(|s| s.contains("aliyun:pk/dn")));
    }
}
