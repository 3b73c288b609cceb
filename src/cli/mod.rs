//! Headless commands: the command line of `ota-console`, one file per subcommand, all driving the
//! same library as the window. Parsing lives here; `main.rs` only dispatches.

pub mod args;
pub mod broker;
pub mod broker_config;
pub mod connection;
pub mod demo;
pub mod devices;
pub mod dialects;
pub mod hash;
pub mod help;
pub mod log;
pub mod parse_error;
pub mod rollout;
pub mod sim;
pub mod tls;
#[cfg(feature = "gui")]
pub mod window;
pub mod words;
